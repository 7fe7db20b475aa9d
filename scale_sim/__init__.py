"""A local simulator of the Scale v1 API: tasks, test-mode completion, callbacks with retries and faults.

`create_app(settings)` builds the Flask app and does no background work; start the scheduler
with ``app.extensions["scale_sim"].start()`` (``python -m scale_sim`` does), or use
:class:`scale_sim.server.SimServer` to run the whole thing on a free loopback port.
"""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from callback_server.config import Secret
from callback_server.defaults import LOCAL_HOSTS
from scale_sim import api, pages
from scale_sim.config import SimSettings
from scale_sim.origin import CrossOriginError, check_same_origin
from scale_sim.simulator import Simulator

__all__ = ["Secret", "SimSettings", "Simulator", "create_app"]


def create_app(settings: SimSettings | None = None) -> Flask:
    """Build the simulator app; settings default to the environment. Opens (creates) the SQLite file."""
    settings = SimSettings.from_env() if settings is None else settings
    app = Flask(__name__)
    # A local tool that holds the callback keys: only localhost names as Host, so that a web page
    # cannot drive it through DNS rebinding (and have it call back a URL of its choosing with a key).
    app.config["TRUSTED_HOSTS"] = list(LOCAL_HOSTS)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep task attributes in the reference's order
    app.extensions["scale_sim"] = Simulator(settings)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)

    @app.before_request
    def _refuse_cross_origin() -> None:
        check_same_origin(
            request.method,
            request.headers.get("Origin"),
            request.headers.get("Referer"),
            scheme=request.scheme,
            host=request.host,
        )

    @app.errorhandler(CrossOriginError)
    def _cross_origin(exc: CrossOriginError) -> Response | tuple[str, int]:
        if request.path.startswith("/v1/"):
            return api.error_response(403, str(exc))
        return pages.error_page(str(exc), 403)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith("/v1/"):
            return api.http_error(exc)
        return exc

    return app
