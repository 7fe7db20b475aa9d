"""`make run`'s reloader: which files the worker's handlers come from, and whether one changed.

As Flask's reloader does for the app, the local stack restarts its worker when a handler module's
file changes, by polling modification times (no inotify dependency). Watched: for each module of
``CALLBACK_HANDLERS``, every ``.py`` file of its top-level package (the helpers a handler module
imports from its own package count), or the module's file when it is not in a package. Nothing is
imported: a module that does not import is the worker's to report, and the watch goes on.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

POLL_INTERVAL = 1.0
"""Seconds between two looks at the handler files."""

Stamp = tuple[int, int]
"""A file's modification time (ns) and size: either moving means it was written."""


def handler_roots(modules: Iterable[str]) -> list[Path]:
    """The directories (packages) and files the handler modules come from; unknown modules are skipped."""
    roots: list[Path] = []
    for name in modules:
        top = name.split(".", 1)[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            roots.extend(Path(location) for location in spec.submodule_search_locations)
        elif spec.origin and spec.origin.endswith(".py"):
            roots.append(Path(spec.origin))
    return list(dict.fromkeys(roots))


def _python_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d != "__pycache__" and not d.startswith(".")]
        for file in files:
            if file.endswith(".py"):
                yield Path(folder) / file


def stamps(roots: Iterable[Path]) -> dict[Path, Stamp]:
    """Every watched file and its stamp now (a file removed meanwhile is left out)."""
    found: dict[Path, Stamp] = {}
    for root in roots:
        for path in _python_files(root):
            try:
                status = path.stat()
            except OSError:
                continue
            found[path] = (status.st_mtime_ns, status.st_size)
    return found


class HandlerFiles:
    """The handler modules' files as last seen; :meth:`changed` names what moved since."""

    def __init__(self, modules: Iterable[str]) -> None:
        self.modules = tuple(modules)
        self.seen = stamps(handler_roots(self.modules))

    def changed(self) -> list[Path]:
        """The files written, added or removed since the last call (or since this watch began)."""
        now = stamps(handler_roots(self.modules))
        moved = sorted(path for path in now.keys() | self.seen.keys() if now.get(path) != self.seen.get(path))
        self.seen = now
        return moved
