"""gunicorn settings for the receiver, tuned for Heroku's router. Every value can be overridden
on the command line; the environment variables named here are Heroku's own or documented in the README.
"""

import os

from callback_server.config import ServerSettings

# PORT and WEB_CONCURRENCY are checked like every other variable: a bad one stops the boot
# with a message naming it.
_server = ServerSettings.from_env()

# Heroku tells the dyno which port to listen on.
bind = f"0.0.0.0:{_server.port}"

# Heroku sets WEB_CONCURRENCY from the dyno's size. The ack path waits on one Redis round
# trip per callback, so more processes than cores keep the CPU busy during those waits.
workers = _server.web_concurrency

# Plain sync workers: the ack path is short and CPU-bound, and measured faster than gthread,
# whose threads queue behind the GIL (bench/ingest.py compares). Scale is a fast machine
# client and Heroku's router fronts the dyno, so slow-client exposure is small; the
# timeout below still bounds it.
worker_class = "sync"

# Build the app once in the master: a missing SCALE_CALLBACK_AUTH_KEY stops the boot with a
# message naming it, instead of every worker crashing in a loop.
preload_app = True

# Heroku's router gives up after 30 s; a request still running at 20 s is stuck (Redis answers
# within ~3 s or we answer 503), so the worker is recycled before the router answers for us.
timeout = 20

# Heroku sends SIGTERM and SIGKILLs 30 s later: finish in-flight callbacks well before that.
graceful_timeout = 25

# The router already logs every request; gunicorn's access log would only repeat it.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# Heroku's router is the only client that reaches the dyno, and it sets X-Forwarded-*.
forwarded_allow_ips = "*"


def when_ready(server):  # noqa: ANN001 - gunicorn's hook signature
    """Warn loudly once at boot when Redis could evict queued callbacks."""
    from callback_server.config import Settings
    from callback_server.connection import connect, warn_if_evicting
    from callback_server.logs import configure_logging

    configure_logging()
    warn_if_evicting(connect(Settings.from_env()))


def post_fork(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Structured logs in every worker process."""
    from callback_server.logs import configure_logging

    configure_logging()
