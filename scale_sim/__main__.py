"""`python -m scale_sim`: serve the simulator on $PORT (default 8090) with its scheduler running."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from werkzeug.serving import make_server

from callback_server.exceptions import ConfigError as ReceiverConfigError
from callback_server.logs import configure_logging
from scale_sim import create_app
from scale_sim.config import SimSettings
from scale_sim.exceptions import SimConfigError
from scale_sim.server import RequestHandler

log = logging.getLogger("scale_sim")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> int:
    """Read the environment, start the scheduler and serve until interrupted; 2 on a bad setting."""
    try:
        # The receiver's log format (logfmt, or LOG_FORMAT=json), so `make run` prints one format.
        configure_logging()
        settings = SimSettings.from_env()
    except (SimConfigError, ReceiverConfigError) as exc:
        print(f"scale_sim: configuration error: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    simulator = app.extensions["scale_sim"]
    server = make_server(settings.host, settings.port, app, threaded=True, request_handler=RequestHandler)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    simulator.start()
    log.info("listening on http://%s:%d (API at /v1, task page at /)", settings.host, server.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        simulator.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
