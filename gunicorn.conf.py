"""gunicorn settings for the receiver, tuned for Heroku's router. Every value can be overridden
on the command line; the environment variables named here are Heroku's own or documented in the README.
"""

# gevent workers (see worker_class below). The standard library is patched here, first thing
# in the master and before the app is imported (preload_app), so redis-py, urllib3 and ssl all
# get the cooperative versions: patched later, in each worker, ssl would be half-patched (gevent
# warns of RecursionError on rediss://, Heroku Redis's TLS URL). Workers inherit it by fork.
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402 - after the patch, on purpose

from gunicorn import glogging  # noqa: E402

from callback_server.config import ServerSettings  # noqa: E402
from callback_server.logs import logging_config  # noqa: E402

# PORT and WEB_CONCURRENCY are checked like every other variable: a bad one stops the boot
# with a message naming it.
_server = ServerSettings.from_env()

# Heroku tells the dyno which port to listen on.
bind = f"0.0.0.0:{_server.port}"

# Heroku sets WEB_CONCURRENCY from the dyno's size. The ack path waits on one Redis round
# trip per callback, so more processes than cores keep the CPU busy during those waits.
workers = _server.web_concurrency

# gevent workers, chosen by measurement (bench/slowloris.py, bench/ingest.py; README). A sync
# worker reads a request's headers itself, so five connections trickling theirs (no key needed)
# stalled every callback until the 20 s timeout; a gthread worker holds a thread per trickler,
# for as long as it trickles. A gevent worker reads each connection in a greenlet: 50 slow
# connections cost nothing, legitimate callbacks are answered within milliseconds, and
# throughput equals sync (the ack path is CPU-bound either way: one greenlet runs at a time).
worker_class = "gevent"

# Connections one worker holds at once (gevent's pool); further ones wait in the listen backlog.
# Heroku's router sends at most 50 concurrent requests per dyno per router.
worker_connections = 1000

# With gevent, the request line and headers must arrive within this many seconds (and a kept-
# alive connection must start its next request within it), or the connection is closed: a
# trickling client is cut off after 2 s. Heroku's router sends the headers of a request in one go.
keepalive = 2

# Build the app once in the master: a missing SCALE_CALLBACK_AUTH_KEY stops the boot with a
# message naming it, instead of every worker crashing in a loop.
preload_app = True

# Heroku's router gives up after 30 s; a worker whose event loop has not run for 20 s is stuck
# (a request waiting on Redis yields; Redis answers within ~3 s or we answer 503), so it is
# recycled before the router answers for us.
timeout = 20

# Heroku sends SIGTERM and SIGKILLs 30 s later: finish in-flight callbacks well before that.
graceful_timeout = 25

# The router already logs every request; gunicorn's access log would only repeat it.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# gunicorn's own lines (boot, worker start and exit, shutdown) in the format of every other
# process (LOG_FORMAT: logfmt or json; callback_server/logs.py): its loggers lose the handler
# whose format printed %(process)d and propagate to the root's one handler, as the app's do.
logconfig_dict = logging_config(_server.log_format, loglevel)


class StructuredLogger(glogging.Logger):
    """gunicorn's logger (its lines go through logconfig_dict), with the access log only if accesslog is set.

    gunicorn turns its access log on whenever logconfig_dict is set; the router already logs
    every request, and building each access line would cost the ack path for nothing.
    """

    def _compute_access_log_enabled(self) -> bool:
        return bool(self.cfg.accesslog)


logger_class = StructuredLogger

# Heroku's router is the only client that reaches the dyno, and it sets X-Forwarded-*.
forwarded_allow_ips = "*"


def when_ready(server):
    """Warn loudly once at boot when Redis could evict queued callbacks."""
    from callback_server.config import Settings
    from callback_server.connection import connect, warn_if_evicting
    from callback_server.logs import configure_logging

    configure_logging()
    warn_if_evicting(connect(Settings.from_env()))


def post_fork(server, worker):
    """Structured logs in every worker process (inherited from the master; this only makes sure)."""
    from callback_server.logs import configure_logging

    configure_logging()


def post_request(worker, req, environ, resp):
    """After answering a request whose body framing was broken, drain what the client still sends.

    The body was not read to its end, so closing at once would leave bytes in the kernel's
    buffer and turn the close into a reset, which can destroy the 400 before the client reads
    it (sync and gthread workers close gracefully; the gevent worker does not). Bounded: 64 KB
    or 1 s, in this greenlet only.
    """
    from callback_server.web.ingest import UNREAD_BODY

    sock = environ.get("gunicorn.socket")
    if not environ.get(UNREAD_BODY) or sock is None:
        return
    import socket
    import time

    try:
        sock.shutdown(socket.SHUT_WR)
        deadline, drained = time.monotonic() + 1.0, 0
        while drained < 65536 and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            data = sock.recv(4096)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass  # the client is gone: nothing left to protect
