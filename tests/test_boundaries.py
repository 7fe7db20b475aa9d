"""The package's boundary, stated in callback_server/web/__init__.py and kept true here.

Nothing outside ``callback_server.web`` imports Flask: the workers and the command line load no
web framework (as Flask's own ``sansio`` package keeps its no-I/O rule with a test).
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import ROOT

CORE = [
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for package in ("callback_server", "workers")
    for path in sorted((ROOT / package).rglob("*.py"))
    if "web" not in path.relative_to(ROOT / package).parts and path.stem != "__main__"
]
"""Every module of the core and the workers (``__init__`` as its package)."""


def test_the_core_and_the_workers_load_no_web_framework() -> None:
    names = [name.removesuffix(".__init__") for name in CORE]
    assert "callback_server.deliveries" in names and "workers.worker" in names and len(names) > 30
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'jinja2'))\n"
        "assert not loaded, loaded\n"
        "import callback_server.web\n"
        "assert 'flask' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_old_procfile_name_of_the_app_factory_still_works() -> None:
    """`callback_server:create_app()`, in the Procfile of deployments made before the web tier moved."""
    script = (
        "import sys, callback_server\nassert 'flask' not in sys.modules\nprint(callback_server.create_app.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "callback_server.web", done.stderr[-2000:]
