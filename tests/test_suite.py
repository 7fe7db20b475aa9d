"""The suite's own rules: test modules never import each other, and the soak runs only when asked for.

Helpers that two modules share live in ``tests.support`` (see its docstring); the soak is skipped
unless ``--soak`` is given, so no ``-m`` a maintainer types (``make test-fast`` is ``-m "not slow"``)
starts minutes of traffic.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT


def imports_of_tests(path: Path) -> list[str]:
    """The ``tests.*`` modules that a file imports, at any depth (a function's local import too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "tests" else [f"tests.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [name for name in names if name == "tests" or name.startswith("tests.")]
    return found


def test_modules_import_from_tests_support_only() -> None:
    files = [p for p in sorted((ROOT / "tests").rglob("*.py")) if "fixtures" not in p.relative_to(ROOT).parts]
    files += sorted((ROOT / "bench").rglob("*.py"))
    assert len(files) > 80
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imports_of_tests(path)
        if name != "tests.support" and not name.startswith("tests.support.")
    ]
    assert wrong == [], "move what they import into tests/support/:\n" + "\n".join(wrong)


def test_the_rule_reads_every_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import tests.processes\nfrom tests import conftest\nfrom tests.support.keys import LIVE_KEY\n"
        "def f():\n    from tests.scale_sim.test_client import CLIENT_TYPES\nfrom .sibling import x\nimport testsuite\n"
    )
    assert imports_of_tests(module) == [
        "tests.processes",
        "tests.conftest",
        "tests.support.keys",
        "tests.scale_sim.test_client",
    ]


def test_the_product_never_imports_the_tests() -> None:
    packages = ("callback_server", "workers", "scale_sim")
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imports_of_tests(path)
    ]
    assert wrong == []


def plan(*args: str) -> str:
    """What pytest would run for the soak's file (``--setup-plan``: nothing is started), as its output."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--setup-plan", *args, "tests/test_soak.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("selection", ["not slow", "soak"])
def test_the_soak_is_skipped_whatever_m_is_given_without_soak(selection: str) -> None:
    out = plan("-m", selection)
    assert "1 skipped" in out, out[-2000:]
    assert "pass --soak (make soak)" in out
    assert "fixtures used" not in out  # its stack would not even be planned


def test_the_soak_runs_with_soak() -> None:
    out = plan("--soak", "-m", "soak")
    assert "skipped" not in out, out[-2000:]
    assert "test_soak_nothing_lost_nothing_stuck" in out and "fixtures used" in out and "stack" in out


def test_make_soak_passes_soak_and_make_test_fast_leaves_slow_tests_out() -> None:
    makefile = (ROOT / "Makefile").read_text()
    soak = makefile.split("\nsoak:", 1)[1].split("\n\n", 1)[0]
    assert "--soak" in soak and "-m soak" in soak
    fast = makefile.split("\ntest-fast:", 1)[1].split("\n\n", 1)[0]
    assert '-m "not slow"' in fast
