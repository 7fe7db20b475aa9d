"""Serve the simulator over HTTP: in a thread on a free port (tests, harnesses) or in the foreground."""

from __future__ import annotations

import threading
from types import TracebackType

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from scale_sim import create_app
from scale_sim.config import SimSettings
from scale_sim.simulator import Simulator

POLL_INTERVAL = 0.05
"""Seconds between the server thread's checks for shutdown: stop() takes at most this long to return."""


class RequestHandler(WSGIRequestHandler):
    """HTTP/1.0, so every answer closes its connection.

    The official client opens a requests.Session per call and never closes it; with keep-alive,
    each call would leave a socket open until garbage collection (a ResourceWarning in tests).
    """

    protocol_version = "HTTP/1.0"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: the simulator logs what matters itself, and request lines would carry query strings."""


class SimServer:
    """The simulator app on a werkzeug server in a background thread, plus its scheduler.

    ``with SimServer(settings) as sim: ScaleClient("test_k", api_instance_url=sim.api_url)``.
    Port 0 (the default) picks a free port; ``url`` tells which.
    """

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        start_scheduler: bool = True,
    ) -> None:
        self.settings = SimSettings.from_env() if settings is None else settings
        self.app: Flask = create_app(self.settings)
        self.simulator: Simulator = self.app.extensions["scale_sim"]
        self._host = host
        self._port = port
        self._start_scheduler = start_scheduler
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._server is None:
            raise RuntimeError("SimServer is not started")
        return self._server.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the HTML page is here."""
        return f"http://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The base URL to give a Scale client: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def start(self) -> SimServer:
        """Listen, serve in a daemon thread, and start the scheduler (unless start_scheduler=False)."""
        self._server = make_server(self._host, self._port, self.app, threaded=True, request_handler=RequestHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(POLL_INTERVAL,), name="scale-sim-http", daemon=True
        )
        self._thread.start()
        if self._start_scheduler:
            self.simulator.start()
        return self

    def stop(self) -> None:
        """Stop the scheduler, stop serving, and close the database (again is harmless)."""
        self.simulator.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self.simulator.store.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
