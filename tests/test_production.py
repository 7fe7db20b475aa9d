"""The production install, made and run as Heroku makes and runs it.

Heroku's Python buildpack installs ``requirements.txt`` and nothing else, then runs each
``Procfile`` line in a dyno of its own, with Heroku Redis at a ``rediss://`` URL behind a
self-signed certificate. These tests build that virtualenv (cached by the hash of
``requirements.txt`` and the Python version), import every module from it, and run the Procfile's
lines from it against a TLS ``redis-server`` limited like the ``mini`` plan, with the variables a
deploy of ``app.json`` sets and Heroku's own (``DYNO``, ``PORT``, ``WEB_CONCURRENCY``). The
development virtualenv hides what ``requirements.txt`` lacks (pytest brings ``packaging``, which
gunicorn's gevent worker imports): nothing here runs from it but the test itself and the simulator.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest
import redis
import requests
from packaging.utils import canonicalize_name

from callback_server import defaults, stats
from callback_server.config import Settings
from callback_server.embedded import free_port
from scale_sim.server import SimServer
from tests.support.fixtures import load_fixture
from tests.support.http import answers, post_callback
from tests.support.keys import LIVE_KEY
from tests.support.processes import ROOT, wait_for
from tests.support.sims import prompt_sim_settings

pytestmark = pytest.mark.slow

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scale-callback-receiver"
"""Where the production virtualenv is kept between runs (CI's clones share it)."""

API_KEY = "live_production_install_account"
MINI_CONNECTIONS = 20
"""Heroku Redis mini: 20 connections for every dyno and ``heroku run`` together."""
MINI_MEMORY = "25mb"
HEROKU_STOP_GRACE = 30
"""Seconds between Heroku's SIGTERM to every process of a dyno and its SIGKILL."""
WEB_CONCURRENCY = "2"
"""What Heroku's Python buildpack sets on the app.json formation's basic dynos (512 MB)."""


def procfile() -> dict[str, str]:
    """The Procfile's process types and their command lines, as Heroku reads them."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def pinned() -> dict[str, str]:
    """requirements.txt's pins: canonical name -> version."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            assert version, f"not pinned: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


@pytest.fixture(scope="session")
def production_venv() -> Path:
    """A virtualenv with ``pip install -r requirements.txt`` and nothing else, made once per requirements file."""
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = CACHE / f"production-venv-{digest}"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        install = subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "install", "--no-input", "-q", "-r", "requirements.txt"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
        (venv / ".complete").write_text(digest)
    return venv


def heroku_env(venv: Path, **variables: str) -> dict[str, str]:
    """A dyno's environment: the production virtualenv's PATH and the given variables, nothing of ours."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(venv),
        **variables,
    }


def app_json_env(**required: str) -> dict[str, str]:
    """What a deploy of app.json sets: the required variables (given), each default value, each generated secret."""
    variables = json.loads((ROOT / "app.json").read_text())["env"]
    env = {}
    for name, spec in variables.items():
        if spec.get("required"):
            assert name in required, f"app.json requires {name}; the test must give it"
            env[name] = required[name]
        elif "value" in spec:
            env[name] = spec["value"]
        elif spec.get("generator") == "secret":
            env[name] = secrets.token_hex(32)  # what Heroku generates: 64 hex characters
    return env


def test_requirements_pin_every_package_the_production_install_has(production_venv: Path) -> None:
    freeze = subprocess.run(
        [production_venv / "bin" / "python", "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = dict(line.split("==", 1) for line in freeze.splitlines() if "==" in line)
    installed = {canonicalize_name(name): version for name, version in installed.items()}
    installed.pop("pip")  # the buildpack's own
    assert installed == pinned()


def test_requirements_in_names_only_pinned_packages() -> None:
    """Each top-level dependency (and extra) of requirements.in is pinned by the generated requirements.txt."""
    top_level = [
        re.split(r"[\[<>=!~ ]", line, maxsplit=1)[0]
        for line in (ROOT / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert top_level and {canonicalize_name(name) for name in top_level} <= set(pinned())
    assert "packaging" in pinned()  # gunicorn[gevent]'s: the gevent worker imports it


def test_every_module_imports_from_the_production_install(production_venv: Path) -> None:
    script = """
import importlib, pkgutil, sys
import callback_server, workers
names = ["gunicorn.workers.ggevent"]
for package in (callback_server, workers):
    names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
              if not m.name.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
import flask
assert flask.__file__.startswith(sys.prefix), flask.__file__
from workers.testing import FIXTURE_TYPES, load_fixture, make_task
assert all(make_task(load_fixture(name)).type == name for name in FIXTURE_TYPES)
print(len(names))
"""
    done = subprocess.run(
        [production_venv / "bin" / "python", "-W", "error", "-c", script],
        cwd=ROOT,
        env=heroku_env(production_venv),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) > 40


class TlsRedis:
    """A redis-server serving TLS only, with a self-signed certificate and the mini plan's limits."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, ssl_cert_reqs=None, socket_timeout=5)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cert, key = self.folder / "cert.pem", self.folder / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=redis"]
            + ["-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        args = ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
        args += ["--tls-auth-clients", "no", "--dir", str(self.folder), "--appendonly", "yes", "--save", ""]
        args += ["--maxmemory", MINI_MEMORY, "--maxmemory-policy", "noeviction"]
        args += ["--maxclients", str(MINI_CONNECTIONS), "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        wait_for(lambda: _pings(client), timeout=20, what="the TLS redis-server")
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (make test installs it)")
    server = TlsRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@contextmanager
def dyno(kind: str, command: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One dyno: the Procfile line run by bash, as Heroku runs it. Killed whole on the way out."""
    with log.open("ab") as out:
        proc = subprocess.Popen(["bash", "-c", command], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        for member in _family(proc):
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=20)


def _family(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        parent = psutil.Process(proc.pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def restart(dynos: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """SIGTERM to every process of every dyno at once, as at Heroku's daily restart; seconds each took to exit."""
    started = time.monotonic()
    for proc in dynos.values():
        for member in _family(proc):
            try:
                member.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
    took = {}
    for kind, proc in dynos.items():
        try:
            proc.wait(timeout=HEROKU_STOP_GRACE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the {kind} dyno was still running {HEROKU_STOP_GRACE} s after SIGTERM (Heroku SIGKILLs it)")
        took[kind] = time.monotonic() - started
    return took


def callback(task_id: str) -> dict[str, object]:
    body = load_fixture("categorization")
    body["task_id"] = body["task"]["task_id"] = task_id
    return body


def done(conn: redis.Redis) -> float:
    return stats.totals(conn).get("job|done", 0.0)


def test_the_procfile_runs_from_the_production_install_on_tls_redis_and_a_restart_loses_nothing(
    production_venv: Path, tls_redis: TlsRedis, tmp_path: Path
) -> None:
    processes = procfile()
    assert set(processes) == {"web", "worker", "clock"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    conn = tls_redis.client()
    logs = {kind: tmp_path / f"{kind}.log" for kind in (*processes, "worker-again")}
    with ExitStack() as stack:
        sim = stack.enter_context(SimServer(prompt_sim_settings(f"{base}/callback", tmp_path / "sim.sqlite3")))
        deployed = app_json_env(SCALE_CALLBACK_AUTH_KEY=LIVE_KEY, SCALE_API_KEY=API_KEY)
        assert deployed["DASHBOARD_PASSWORD"] and deployed["METRICS_TOKEN"]  # generated by a deploy
        # Heroku Redis's add-on sets REDIS_URL; the one change from a deploy is Scale's API, here the simulator.
        common = {**deployed, "REDIS_URL": tls_redis.url, "SCALE_API_URL": sim.api_url}

        def env_of(kind: str, number: int = 1) -> dict[str, str]:
            return heroku_env(
                production_venv, **common, DYNO=f"{kind}.{number}", PORT=str(port), WEB_CONCURRENCY=WEB_CONCURRENCY
            )

        dynos = {
            kind: stack.enter_context(dyno(kind, line, env_of(kind), logs[kind])) for kind, line in processes.items()
        }
        wait_for(lambda: _up(dynos["web"], base, logs["web"]), timeout=60, what="the web dyno")

        # A callback is answered queued and run by the worker's handlers (the example handlers).
        first = [post_callback(base, callback(f"prod-task-{n}")) for n in range(5)]
        assert [(a.status_code, a.json()) for a in first] == [(200, {"status": "queued"})] * 5
        wait_for(lambda: done(conn) == 5, timeout=60, what="the worker to run the handlers")
        assert "categorization prod-task-0: " in logs["worker"].read_text()
        wait_for(lambda: "reconciliation done" in logs["clock"].read_text(), timeout=60, what="the clock's run")

        # doctor, as `heroku run` starts it: every check passes, the clock and the connections included.
        doctor = subprocess.run(
            ["bash", "-c", "python -m callback_server doctor"],
            env=env_of("run"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        lines = doctor.stdout.splitlines()
        assert all(line.startswith("ok") for line in lines), doctor.stdout
        for name in ("redis tls", "scale api", "workers", "clock", "redis connections"):
            assert any(line[6:].startswith(f"{name}:") for line in lines), (name, doctor.stdout)
        assert re.search(rf"redis connections: \d+ of {MINI_CONNECTIONS} open", doctor.stdout), doctor.stdout

        # A burst while Redis is slow: the web processes stay within their pools, inside the plan.
        answers_during: list[int] = []
        burst = [threading.Thread(target=_post_into, args=(base, f"burst-{n}", answers_during)) for n in range(40)]
        conn.client_pause(400, all=False)  # writes wait 0.4 s: every request holds its connection meanwhile
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join(timeout=30)
        clients = int(conn.info("clients")["connected_clients"])
        assert clients <= MINI_CONNECTIONS - 2, clients  # room left for `heroku run` and redis-cli
        assert set(answers_during) <= {200, 503}, answers_during
        accepted = 5 + answers_during.count(200)
        assert "max number of clients" not in "".join(log.read_text() for log in logs.values() if log.exists())

        # The daily restart: callbacks keep arriving, then every process of every dyno gets SIGTERM.
        late: list[int] = []
        sender = threading.Thread(target=_keep_posting, args=(base, late))
        sender.start()
        wait_for(lambda: len(late) >= 5, timeout=30, what="callbacks during the restart")
        took = restart(dynos)
        sender.join(timeout=30)
        assert all(seconds < HEROKU_STOP_GRACE for seconds in took.values()), took
        accepted += late.count(200)
        for kind in processes:
            text = logs[kind].read_text()
            assert "Traceback" not in text and "Logging error" not in text, (kind, text[-3000:])

        # The worker dyno comes back: everything that was answered queued runs, once.
        with dyno("worker", processes["worker"], env_of("worker", 2), logs["worker-again"]) as again:
            wait_for(lambda: done(conn) >= accepted, timeout=120, what=f"all {accepted} accepted callbacks handled")
            restart({"worker": again})
        assert done(conn) == accepted
        assert stats.totals(conn).get("job|failed", 0) == 0
        assert conn.llen("rq:queue:callbacks") == 0


def _up(proc: subprocess.Popen[bytes], base: str, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the web dyno exited with {proc.returncode}: {log.read_text()[-3000:]}")
    return answers(f"{base}/healthz")


def _post_into(base: str, task_id: str, statuses: list[int]) -> None:
    try:
        statuses.append(post_callback(base, callback(task_id)).status_code)
    except requests.RequestException:
        statuses.append(0)


def _keep_posting(base: str, statuses: list[int]) -> None:
    """Callbacks one after another until the web dyno stops answering (bounded: 2,000 at most)."""
    for n in range(2000):
        try:
            statuses.append(post_callback(base, callback(f"restart-{n}")).status_code)
        except requests.RequestException:
            return


APP_JSON_KEYS = {
    "name", "description", "keywords", "website", "repository", "logo", "success_url", "scripts",
    "env", "formation", "image", "addons", "buildpacks", "environments", "stack",
}  # fmt: skip
"""The top-level keys of Heroku's app.json schema (its app.json Schema article)."""

READ_FROM_ENV = re.compile(
    r'(?:environ|env)(?:\.get)?[(\[]\s*"([A-Z][A-Z0-9_]+)"' + r'|\(\s*(?:env|os\.environ),\s*"([A-Z][A-Z0-9_]+)"'
)
"""``env.get("X")``, ``os.environ["X"]``, ``read_int(env, "X", ...)``: a variable the code reads."""


def test_app_json_holds_only_keys_herokus_schema_knows() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    assert set(app) <= APP_JSON_KEYS, set(app) - APP_JSON_KEYS
    for name, spec in app["env"].items():
        assert set(spec) <= {"description", "value", "required", "generator"}, name
        assert spec.get("generator", "secret") == "secret", name
        assert isinstance(spec.get("value", ""), str), name  # Heroku takes strings only
    for kind, spec in app["formation"].items():
        assert kind in procfile() and set(spec) <= {"quantity", "size"}, kind
    assert [addon["plan"] for addon in app["addons"]] == ["heroku-redis:mini"]


def test_every_variable_the_code_reads_is_in_app_json_or_the_docs_say_why_not() -> None:
    sources = [*ROOT.glob("callback_server/**/*.py"), *ROOT.glob("workers/**/*.py"), ROOT / "gunicorn.conf.py"]
    read = {name for path in sources for match in READ_FROM_ENV.findall(path.read_text()) for name in match if name}
    read.add(defaults.DEV_FLAG)  # read through its constant
    assert {"SCALE_CALLBACK_AUTH_KEY", "REDIS_POOL_SIZE", "LOG_LEVEL", "REDIS_URL"} <= read  # the pattern works
    listed = set(json.loads((ROOT / "app.json").read_text())["env"])
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    left_out = configuration.split("**Variables app.json leaves out.**", 1)[1].split("\n\n", 1)[0]
    unexplained = {name for name in read - listed if f"`{name}`" not in left_out}
    assert not unexplained, f"read by the code, in neither app.json nor docs/configuration.md: {unexplained}"


def test_app_json_values_are_the_codes_defaults() -> None:
    """A deploy's settings equal what the code does with the variables unset: no drift between the two."""
    required = {"SCALE_CALLBACK_AUTH_KEY": LIVE_KEY, "SCALE_API_KEY": API_KEY, "REDIS_URL": "rediss://h:1"}
    deployed = {k: v for k, v in app_json_env(**required).items() if k not in ("DASHBOARD_PASSWORD", "METRICS_TOKEN")}
    assert Settings.from_env({**required, **deployed}) == Settings.from_env(required)


def test_readme_deploy_section_names_what_this_test_does() -> None:
    """The README's deploy steps are this file's: the plan, the variables app.json requires, the Procfile's types."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploying to Heroku", 1)[1].split("\n## ", 1)[0]
    assert "heroku-redis:mini" in section and f"{MINI_CONNECTIONS} connections" in section
    for name, spec in json.loads((ROOT / "app.json").read_text())["env"].items():
        if spec.get("required"):
            assert name in section, name
    for kind in procfile():
        assert f"`{kind}`" in section, kind
    assert "tests/test_production.py" in section
    assert shlex.split(procfile()["web"])[0] == "gunicorn"
