# The README's commands. Each one makes the virtualenv first (once, and again when a
# requirements file changes), so a fresh machine needs nothing but python3.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast soak lint bench

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	# The project itself, editable: its console scripts, and no sys.path edits anywhere.
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

run: $(VENV)/.installed  ## the receiver, a worker, the simulator (embedded Redis when REDIS_URL is unset)
	$(PY) -m callback_server dev

test: $(VENV)/.installed  ## the whole suite, on a private redis-server it starts itself
	bash tests/install-system-packages.sh  # Debian's chromium, redis-server and openssl, when missing
	$(PY) -m pytest

test-fast: $(VENV)/.installed  ## the tests that start no gunicorn, worker or browser (-m "not slow"): 1.5 minutes, not 10; no system packages
	$(PY) -m pytest -m "not slow" -p no:cacheprovider

soak: $(VENV)/.installed  ## minutes of simulator traffic while worker, web and Redis are killed (skipped without --soak, as in make test)
	$(PY) -m pytest -m soak --soak -p no:cacheprovider tests/test_soak.py

lint: $(VENV)/.installed  ## what the test suite checks too: ruff lint and format, mypy
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy callback_server workers scale_sim

bench: $(VENV)/.installed
	$(PY) -m bench.ingest && $(PY) -m bench.workers
