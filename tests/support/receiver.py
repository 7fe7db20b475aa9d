"""A local HTTP server standing in for the project's callback receiver, for the simulator's tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.support.processes import wait_for

MIB = 1024 * 1024
"""A mebibyte: the receiver's body limit is counted in them."""


@dataclass
class Received:
    """One callback as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    size: int
    at: float
    answered: int


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Receiver:
    """A local HTTP server standing in for the project's callback receiver.

    `script` holds the statuses of the next answers in order (then 200 for ever); a status of
    -1 answers after sleeping `slow_seconds` (to provoke the sender's timeout). Bodies over
    `max_bytes` are answered 413 (after draining them), as a receiver with a 10 MiB limit does.
    """

    script: list[int] = field(default_factory=list)
    max_bytes: int | None = None
    slow_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}/callback"

    def respond_with(self, *statuses: int) -> None:
        with self._lock:
            self.script[:] = list(statuses)

    def _next_status(self) -> int:
        with self._lock:
            return self.script.pop(0) if self.script else 200

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        status = self._next_status()
        size = request.content_length or 0
        if self.max_bytes is not None and size > self.max_bytes:
            stream = request.stream
            while stream.read(1 << 20):
                pass
            body = None
            status = 413
        else:
            raw = request.get_data()
            size = len(raw)
            body = json.loads(raw) if raw else None
        if status == -1:
            time.sleep(self.slow_seconds)
            status = 200
        with self._lock:
            self.received.append(Received(request.path, dict(request.headers), body, size, time.time(), status))
        return Response(b"ok" if status == 200 else b"no", status=status)(environ, start_response)

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.received if r.body is not None]

    def for_task(self, task_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.body is not None and r.body.get("task_id") == task_id]

    def wait_for(self, count: int, task_id: str | None = None, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` callbacks (for `task_id`, if given) arrived; return them."""

        def arrived() -> list[Received]:
            with self._lock:
                got = [r for r in self.received if task_id is None or (r.body or {}).get("task_id") == task_id]
            return got if len(got) >= count else []

        return wait_for(arrived, timeout, what=f"{count} callbacks")
