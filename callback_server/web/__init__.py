"""The web tier: the app factory, the ack path, health, /metrics and the ops console.

The rule, as Flask's ``sansio`` package states its own: **nothing outside ``callback_server.web``
imports Flask.** The core (config, deliveries, ledger, reconciler, the CLI) and the workers
load no web framework; ``tests/test_boundaries.py`` imports them and checks that Flask is not
loaded. This package may import the core, never the other way round.
"""

from __future__ import annotations

import redis
from flask import Flask

from callback_server import defaults
from callback_server.config import Settings
from callback_server.web.state import EXTENSION, ReceiverState


def create_app(settings: Settings | None = None, *, connection: redis.Redis | None = None) -> Flask:
    """Build the web app; with no settings given, read them from the environment (fail-fast)."""
    from callback_server import sentry
    from callback_server.web import dashboard, error_handlers, health, ingest, metrics

    settings = settings if settings is not None else Settings.from_env()
    sentry.init_sentry(settings, "web")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    if settings.local_dev:
        # The local stack's key and password are short and printed: no page may reach it by DNS rebinding.
        app.config["TRUSTED_HOSTS"] = list(defaults.LOCAL_HOSTS)
    # Nothing here is a browser session; JSON answers stay compact on the hot path.
    app.json.compact = True  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = ReceiverState.build(settings, connection)
    error_handlers.init_app(app)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(health.bp)
    dashboard.init_app(app)
    metrics.init_app(app)
    return app
