"""A read-only ops dashboard at ``/dashboard``, behind HTTP basic auth.

It is mounted only when ``DASHBOARD_PASSWORD`` is set, and it never changes state on a GET:
replays and deletions stay on the command line, where they leave a trace in the shell.
It answers at ``/dashboard`` and ``/dashboard/`` alike, so no redirect (whose Location would be
built from the request's Host header) is ever sent; every answer forbids framing, scripts and
caching.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, render_template_string, request
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from callback_server import defaults
from callback_server.jobs import failure_line
from callback_server.quarantine import Quarantine
from callback_server.reconcile import RunLog
from callback_server.state import receiver_state

DASHBOARD_USER = "ops"
"""The basic-auth user name; the password is DASHBOARD_PASSWORD."""

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

_STYLE = """body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}h2{margin-top:1.5em}"""

SECURITY_HEADERS = {
    # No script at all, the one inline style by its hash, nothing framed, nothing cached.
    "Content-Security-Policy": (
        "default-src 'none'; "
        f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()}'; "
        "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Headers of every dashboard answer, the 401 included."""

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Scale callbacks</title>
<style>""" + _STYLE + """</style></head>
<body><h1>Scale callbacks</h1>
<table><tr>{% for name, value in counts %}<th>{{ name }}</th>{% endfor %}</tr>
<tr>{% for name, value in counts %}<td>{{ value }}</td>{% endfor %}</tr></table>
<h2>Failed jobs (newest {{ failed|length }})</h2>
<table><tr><th>job</th><th>description</th><th>last error</th></tr>
{% for job in failed %}<tr><td>{{ job.id }}</td><td>{{ job.description }}</td><td>{{ job.error }}</td></tr>
{% endfor %}</table>
<h2>Quarantine (newest {{ quarantined|length }})</h2>
<table><tr><th>id</th><th>reason</th><th>size</th><th>last received</th><th>times</th><th>expires at</th></tr>
{% for q in quarantined %}<tr><td>{{ q.id }}</td><td>{{ q.reason }}</td><td>{{ q.size }}</td>
<td>{{ q.last_received_at }}</td><td>{{ q.times_received }}</td><td>{{ q.expires_at or "never" }}</td></tr>
{% endfor %}</table>
<p>Quarantined deliveries are kept for {{ quarantine_days }} days after they were last received (QUARANTINE_TTL).</p>
<h2>Reconciliation runs</h2>
<table><tr><th>started</th><th>window</th><th>seen</th><th>already had</th><th>queued</th><th>errors</th>
<th>complete</th></tr>
{% for run in runs %}<tr><td>{{ run.started_at }}</td><td>{{ run.window_start }} .. {{ run.window_end }}</td>
<td>{{ run.seen }}</td><td>{{ run.already_had }}</td><td>{{ run.queued }}</td><td>{{ run.errors|length }}</td>
<td>{{ run.complete }}</td></tr>{% endfor %}</table>
<p>Replay and delete from the command line: <code>python -m callback_server quarantine|failed ...</code></p>
</body></html>"""


def _authorized(password: bytes) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode("utf-8", "replace"), DASHBOARD_USER.encode())
    password_ok = hmac.compare_digest((auth.password or "").encode("utf-8", "replace"), password)
    return user_ok and password_ok


def snapshot(
    connection: redis.Redis, queue_name: str, limit: int = 20, quarantine_ttl: int = defaults.QUARANTINE_TTL
) -> dict[str, Any]:
    """The numbers and lists the page shows, read without side effects."""
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    failed_registry = FailedJobRegistry(queue=queue)
    failed = []
    for job in queue.job_class.fetch_many(
        failed_registry.get_job_ids(0, limit - 1, cleanup=False), connection=connection, serializer=JSONSerializer
    ):
        if job is not None:
            failed.append({"id": job.id, "description": job.description, "error": failure_line(job)})
    quarantine = Quarantine(connection, ttl=quarantine_ttl)
    return {
        "counts": [
            ("queued", queue.count),
            # cleanup=False throughout: RQ's counting would run its abandoned-job pass, which
            # retries or fails jobs; a page view must never do that.
            ("running", StartedJobRegistry(queue=queue).get_job_count(cleanup=False)),
            ("waiting to retry", ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False)),
            ("failed", failed_registry.get_job_count(cleanup=False)),
            ("finished (recent)", FinishedJobRegistry(queue=queue).get_job_count(cleanup=False)),
            ("quarantined", quarantine.count()),
        ],
        "failed": failed,
        "quarantined": [q.summary() for q in quarantine.recent(limit)],
        "quarantine_days": f"{quarantine_ttl / 86400:g}",
        "runs": [run.as_dict() for run in RunLog(connection).recent(limit)],
    }


@bp.get("", strict_slashes=False)
@bp.get("/")
def index() -> Response | tuple[Response, int]:
    """The dashboard page."""
    state = receiver_state(current_app)
    assert state.settings.dashboard_password is not None  # the blueprint is only mounted with one
    if not _authorized(state.settings.dashboard_password.reveal().encode("utf-8")):
        return Response(
            "authentication required", 401, {"WWW-Authenticate": 'Basic realm="scale-callbacks"'}
        ), 401
    settings = state.settings
    html = render_template_string(
        _PAGE, **snapshot(state.connection, settings.queue_name, quarantine_ttl=settings.quarantine_ttl)
    )
    return Response(html, 200)


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def init_app(app: Flask) -> None:
    """Mount the dashboard only when a password is configured; otherwise it does not exist."""
    if receiver_state(app).settings.dashboard_password is not None:
        app.register_blueprint(bp)
