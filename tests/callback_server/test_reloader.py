"""`make run`'s pieces that need no stack: the handler files it watches, and the files it leaves beside it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from callback_server.devserver import API_URL_FILE, REDIS_URL_FILE, forget_local_stack, write_local_stack
from callback_server.reloader import HandlerFiles, handler_roots
from tests.support.processes import ROOT


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    """tmp_path on sys.path, as a handler author's project is."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))


def bump(path: Path, text: str) -> None:
    """Write ``text`` with a later modification time (a write within the clock's tick must still count)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_roots_are_each_modules_top_level_package_or_file(on_path: Path) -> None:
    (on_path / "reloader_pkg_x" / "handlers").mkdir(parents=True)
    (on_path / "reloader_pkg_x" / "__init__.py").write_text("")
    (on_path / "reloader_pkg_x" / "handlers" / "__init__.py").write_text("")
    (on_path / "reloader_single_x.py").write_text("")
    roots = handler_roots(["reloader_pkg_x.handlers", "reloader_single_x", "no_such_module_xyz", "workers.handlers"])
    assert roots == [on_path / "reloader_pkg_x", on_path / "reloader_single_x.py", ROOT / "workers"]


def test_a_written_added_or_removed_file_is_a_change_and_nothing_else_is(on_path: Path) -> None:
    package = on_path / "reloader_pkg_y"
    (package / "__pycache__").mkdir(parents=True)
    bump(package / "__init__.py", "")
    bump(package / "handlers.py", "x = 1\n")
    files = HandlerFiles(["reloader_pkg_y.handlers"])
    assert files.changed() == []
    (package / "__pycache__" / "handlers.cpython-311.pyc").write_bytes(b"\0")
    (package / "notes.txt").write_text("not python")
    assert files.changed() == []
    bump(package / "handlers.py", "x = 2\n")
    assert files.changed() == [package / "handlers.py"]
    assert files.changed() == []
    bump(package / "helpers.py", "")
    assert files.changed() == [package / "helpers.py"]
    (package / "helpers.py").unlink()
    assert files.changed() == [package / "helpers.py"]


def test_a_stack_forgets_only_its_own_files(tmp_path: Path) -> None:
    write_local_stack(tmp_path, "redis://127.0.0.1:1111/0", "http://127.0.0.1:8090/v1")
    # A second stack started here while the first was stopping wrote its own URL.
    write_local_stack(tmp_path, "redis://127.0.0.1:2222/0", "http://127.0.0.1:8090/v1")
    forget_local_stack(tmp_path, "redis://127.0.0.1:1111/0")
    assert (tmp_path / REDIS_URL_FILE).read_text().strip() == "redis://127.0.0.1:2222/0"
    assert (tmp_path / API_URL_FILE).exists()
    forget_local_stack(tmp_path, "redis://127.0.0.1:2222/0")
    assert not (tmp_path / REDIS_URL_FILE).exists() and not (tmp_path / API_URL_FILE).exists()
    forget_local_stack(tmp_path, "redis://127.0.0.1:2222/0")  # already gone: nothing to do
