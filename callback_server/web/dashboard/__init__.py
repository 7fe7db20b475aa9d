"""The ops console at ``/dashboard``: find any delivery, see what became of it, act on it.

Mounted only when ``DASHBOARD_PASSWORD`` is set; every route (static files included) wants
basic auth (user ``ops``), compared in constant time, with a growing per-client wait after a
few failures (:mod:`.guard`). Nothing changes on a GET: each action is a POST carrying a CSRF
token, answered first with a confirmation page, done only when that is confirmed, and written
to the audit log (:mod:`.actions`). Every answer carries a strict Content-Security-Policy
(scripts and styles from our own static files only, nothing framed) and ``no-store``; every
text a sender chose is escaped by Jinja, and pages refresh themselves by fetching their own URL,
filters included, from a small static script.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, render_template, request
from markupsafe import Markup

from callback_server.exceptions import NotFoundError, RerunError
from callback_server.ledger import Entry, Ledger
from callback_server.reconcile import RunSummary
from callback_server.rerun import RunStore
from callback_server.status import read_status
from callback_server.web.dashboard import actions, charts, data, guard
from callback_server.web.dashboard.guard import DASHBOARD_USER
from callback_server.web.state import ReceiverState, receiver_state

__all__ = ["DASHBOARD_USER", "SECURITY_HEADERS", "bp", "init_app"]

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates", static_folder="static")

SECURITY_HEADERS = {
    # Script and style only from our own files (no inline script, no inline style), nothing
    # framed, forms only to ourselves, nothing cached.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Headers of every dashboard answer, the 401 included."""

REFRESH = {"overview": 10, "list": 5, "detail": 3}
"""Seconds between a page's refreshes of itself, by kind of page."""

JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What an RQ job id may hold (rq.job.validate_job_id): anything else is refused before any action."""

MAX_TARGETS = 1000
"""Most targets one action takes (an 'all on this filter' beyond that is cut, and says so)."""

_DELIVERY_ID = re.compile(r"^[0-9a-f]{32}$")

UNHANDLED_FALLBACK = "workers.unhandled.record_unhandled"
"""The fallback that notes unhandled deliveries: a worker registers its name, but it is no one's handler."""


def _state() -> ReceiverState:
    return receiver_state(current_app)


def _password() -> bytes:
    secret = _state().settings.dashboard_password
    assert secret is not None  # the blueprint is only mounted with one
    return secret.reveal().encode("utf-8")


def _csrf_key() -> bytes:
    """This app's CSRF key, read from Redis once per process (it changes only with the password)."""
    cache: dict[bytes, bytes] = current_app.extensions.setdefault("scb_csrf_keys", {})
    password = _password()
    if password not in cache:
        cache.clear()
        cache[password] = guard.csrf_key(_state().connection, password)
    return cache[password]


def _client() -> str:
    return guard.client_key(
        request.remote_addr, request.headers.get("X-Forwarded-For"), behind_router=_state().settings.behind_router
    )


@bp.before_request
def _authenticate() -> Response | None:
    """Basic auth on every route; a client that failed too often waits, unchecked, until its delay is over."""
    throttle = guard.Throttle(_state().connection)
    client = _client()
    wait, note_login = throttle.check(client)
    if wait:
        return Response(f"too many failed logins: try again in {wait} s", 429, {"Retry-After": str(wait)})
    auth = request.authorization
    if auth is not None and auth.type == "basic" and guard.credentials_match(auth.username, auth.password, _password()):
        g.csrf = guard.csrf_token(_csrf_key())
        if note_login:
            throttle.succeeded(client)
        return None
    if auth is not None:
        delay = throttle.failed(client)
        log.warning("dashboard login failed", extra={"outcome": "denied", "wait_s": delay})
    return Response("authentication required", 401, {"WWW-Authenticate": 'Basic realm="scale-callbacks"'})


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.app_template_filter("when")
def _when(moment: datetime | str | None) -> str:
    if moment is None or moment == "":
        return "-"
    if isinstance(moment, str):
        return moment
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("ago")
def _ago(moment: datetime | float | None) -> str:
    if moment is None:
        return "-"
    seconds = moment if isinstance(moment, int | float) else (data.now() - moment).total_seconds()
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


@bp.app_template_filter("mb")
def _mb(size: int) -> str:
    """Bytes as the overview shows memory: MB with one decimal (KB below 1 MB)."""
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def _page(template: str, refresh: str | None, **context: Any) -> str:
    return render_template(
        f"dashboard/{template}",
        refresh=REFRESH.get(refresh or "", 0),
        csrf=g.csrf,
        here=request.full_path.rstrip("?"),
        **context,
    )


# --- pages --------------------------------------------------------------------------------------


@bp.get("", strict_slashes=False)
@bp.get("/")
def overview() -> str:
    """Counts, the oldest queued job, workers, Redis memory, the last reconciliation, and charts."""
    state = _state()
    conn, settings = state.connection, state.settings
    series = data.chart_data(conn)
    outcomes = list(charts.COLORS)[:4]
    chart_list: list[tuple[str, Markup]] = []
    spans = (("last hour, per minute", series.hour, 1), ("last day, per 15 minutes", series.day, 15))
    for label, bars, size in spans:
        chart_list += [
            (
                f"Callbacks by outcome, {label}",
                charts.stacked_bars(f"Callbacks by outcome, {label}", bars, "out", outcomes, size),
            ),
            (
                f"Handler runs by outcome, {label}",
                charts.stacked_bars(f"Handler runs by outcome, {label}", bars, "run", ("done", "failed"), size),
            ),
            (f"Ack latency, {label}", charts.latency_lines(f"Ack latency, {label}", bars)),
        ]
    status = read_status(conn, settings)
    return _page(
        "overview.html",
        "overview",
        counts=data.counts(status),
        status=status,
        last_run=RunSummary.from_dict(status.runs[0]) if status.runs else None,  # the snapshot read them
        charts=chart_list,
    )


@bp.get("/deliveries")
def deliveries() -> str:
    """Search by task or delivery id; the recent deliveries, filtered by type, event, source and state."""
    state = _state()
    ledger = data.ledger_for(state.connection, state.settings.ledger_ttl)
    registries = data.Registries.read(state.connection, state.settings.callback_queue)
    query = request.args.get("q", "").strip()[:500]
    filters = {name: request.args.get(name, "").strip()[:100] for name in ("type", "event", "source", "state")}
    if query:
        entries = _with_attempts(ledger, ledger.deliveries_of_task(query))
        if _DELIVERY_ID.match(query.lower()):
            one = ledger.delivery(query.lower())
            if one is not None:
                entries = [one, *entries]
        rows = [(entry, registries.state(entry)) for entry in entries]
    else:
        recent = ledger.recent(500, type=filters["type"], event=filters["event"], source=filters["source"])
        rows = [(entry, registries.state(entry)) for entry in recent]
        if filters["state"]:
            rows = [(entry, shown) for entry, shown in rows if shown == filters["state"]]
        rows = rows[:100]
    return _page(
        "deliveries.html",
        "list",
        query=query,
        can_fetch=state.settings.scale_api_key is not None,
        filters=filters,
        rows=rows,
        states=data.STATES,
        sources=data.SOURCES,
        ledger_days=f"{state.settings.ledger_ttl / 86400:g}",
    )


def _with_attempts(ledger: Ledger, entries: list[Entry], limit: int = 25) -> list[Entry]:
    """A task's deliveries (the ledger lists accept entries only) with their attempts, the newest ``limit``."""
    return [ledger.delivery(e.delivery_id) or e for e in entries[:limit]]


@bp.get("/deliveries/<delivery_id>")
def delivery(delivery_id: str) -> tuple[str, int] | str:
    """One delivery: envelope, body, timeline, each handler's state and traceback, the task's other deliveries."""
    state = _state()
    conn = state.connection
    ledger = data.ledger_for(conn, state.settings.ledger_ttl)
    entry = ledger.delivery(delivery_id) if _DELIVERY_ID.match(delivery_id) else None
    if entry is None:
        return _page(
            "missing.html",
            None,
            what="delivery",
            ident=delivery_id,
            why=f"the ledger keeps deliveries for {state.settings.ledger_ttl / 86400:g} days",
        ), 404
    registries = data.Registries.read(conn, state.settings.callback_queue)
    shown = registries.state(entry)
    body = data.job_body(conn, entry.delivery_id)
    started = None
    if shown == "running":
        started = data._when(conn.hget(f"rq:job:{entry.delivery_id}", "started_at"))
    others = _with_attempts(
        ledger, [e for e in ledger.deliveries_of_task(entry.task_id) if e.delivery_id != entry.delivery_id]
    )
    return _page(
        "delivery.html",
        "detail",
        entry=entry,
        state=shown,
        body=body,
        timeline=data.timeline(entry, shown, registries, started),
        handlers=data.handler_states(entry),
        others=[(o, registries.state(o)) for o in others],
    )


@bp.get("/deliveries/<delivery_id>/raw")
def delivery_raw(delivery_id: str) -> Response | tuple[str, int]:
    """The delivery's job as stored (its body whole), for a body the page shows only in part."""
    data_ = data.raw_job_data(_state().connection, delivery_id) if _DELIVERY_ID.match(delivery_id) else None
    if data_ is None:
        return _page("missing.html", None, what="delivery body", ident=delivery_id, why="its job is gone"), 404
    return Response(data_, mimetype="application/json", headers={"Content-Disposition": "inline"})


@bp.get("/failed")
def failed() -> str:
    """Failed jobs and jobs waiting to retry, filtered by text in their description."""
    state = _state()
    text = request.args.get("q", "").strip()[:200]
    return _page(
        "failed.html",
        "list",
        query=text,
        failed=data.failed_jobs(state.connection, state.settings.callback_queue, text),
        scheduled=data.scheduled_jobs(
            state.connection, state.settings.callback_queue, text, ledger_ttl=state.settings.ledger_ttl
        ),
    )


def _quarantined(text: str) -> list[Any]:
    items = _state().quarantine.summaries(500)
    if text:
        items = [i for i in items if text.lower() in i.reason.lower() or text.lower() in i.quarantine_id]
    return items


@bp.get("/quarantine")
def quarantine() -> str:
    """Quarantined bodies (no bodies in the list), filtered by reason."""
    text = request.args.get("q", "").strip()[:200]
    ttl = _state().settings.quarantine_ttl
    return _page("quarantine.html", "list", query=text, items=_quarantined(text), days=f"{ttl / 86400:g}")


@bp.get("/quarantine/<quarantine_id>")
def quarantined(quarantine_id: str) -> tuple[str, int] | str:
    """One quarantined body, escaped, with why it was kept."""
    try:
        item = _state().quarantine.get(quarantine_id[:100])
    except NotFoundError:
        return _page(
            "missing.html",
            None,
            what="quarantined body",
            ident=quarantine_id,
            why="it was replayed, deleted, or expired",
        ), 404
    text = item.body.decode("utf-8", errors="backslashreplace")
    return _page("quarantined.html", "detail", item=item, body=text, large=len(text) > data.LARGE_BODY)


@bp.get("/unhandled")
def unhandled() -> str:
    """Deliveries no handler asked for, filtered by type and event."""
    type_, event = request.args.get("type", "").strip()[:100], request.args.get("event", "").strip()[:100]
    return _page(
        "unhandled.html",
        "list",
        notes=data.unhandled(_state().connection, type_, event),
        filters={"type": type_, "event": event},
    )


@bp.get("/workers")
def workers() -> str:
    """RQ's workers: host, state, current job and since when, heartbeat, counts; lapsed ones marked."""
    return _page("workers.html", "list", workers=data.workers(_state().connection))


@bp.get("/reconciliation")
def reconciliation() -> str:
    """Recent runs with their summaries, and 'run now'."""
    state = _state()
    return _page(
        "reconciliation.html",
        "list",
        configured=state.settings.scale_api_key is not None,
        interval=state.settings.reconcile_interval,
        **data.reconciliation(state.connection),
    )


@bp.get("/reruns")
def reruns() -> str:
    """Reruns, newest first (who, from where, what, how far); and starting one for the deliveries a search shows."""
    state = _state()
    ledger = data.ledger_for(state.connection, state.settings.ledger_ttl)
    query = request.args.get("q", "").strip()[:500]
    filters = {name: request.args.get(name, "").strip()[:100] for name in ("type", "event", "source")}
    rows: list[Entry] = []
    if query:
        rows = ledger.deliveries_of_task(query)
        if _DELIVERY_ID.match(query.lower()):
            one = ledger.delivery(query.lower())
            rows = ([one] if one is not None else []) + rows
    elif any(filters.values()):
        rows = ledger.recent(MAX_TARGETS, type=filters["type"], event=filters["event"], source=filters["source"])
    task_ids = list(dict.fromkeys(entry.task_id for entry in rows))[:MAX_TARGETS]
    handler_names = sorted(set(ledger.handler_names().values()) - {UNHANDLED_FALLBACK})
    return _page(
        "reruns.html",
        "list",
        runs=data.reruns(state.connection),
        query=query,
        filters=filters,
        searched=bool(query or any(filters.values())),
        rows=rows[:100],
        task_ids=task_ids,
        handler_names=handler_names,
        sources=data.SOURCES,
        configured=state.settings.scale_api_key is not None,
    )


@bp.get("/reruns/<run_id>")
def rerun_page(run_id: str) -> tuple[str, int] | str:
    """One rerun: its selection, progress, errors, and each queued task's outcome through the ledger."""
    state = _state()
    try:
        run = RunStore(state.connection).get(run_id[:40])
    except RerunError:
        return _page("missing.html", None, what="rerun", ident=run_id, why="runs are kept 30 days"), 404
    run.queued = RunStore(state.connection).queued(run.run_id)
    tasks = data.rerun_tasks(state.connection, state.settings.callback_queue, state.settings.ledger_ttl, run)
    return _page("rerun.html", "detail", run=run, tasks=tasks)


@bp.get("/audit")
def audit() -> str:
    """Every action taken from the console, newest first."""
    return _page("audit.html", "list", entries=actions.audit_log(_state().connection), kept=actions.AUDIT_KEPT)


# --- actions ------------------------------------------------------------------------------------


def _targets(action: actions.Action) -> tuple[list[str], bool]:
    """The targets a form names: the ids ticked, or everything matching the filter; and whether it was cut."""
    form = request.form
    if action.target == "none":
        return [""], False
    if form.get("scope") != "all" or action.target == "task":
        ids = [i for i in form.getlist("ids") if i][: MAX_TARGETS + 1]
    elif action.target == "failed":
        ids = [
            j.id
            for j in data.failed_jobs(
                _state().connection, _state().settings.callback_queue, form.get("q", ""), MAX_TARGETS + 1
            )
        ]
    elif action.target == "scheduled":
        ids = [
            j.id
            for j in data.scheduled_jobs(
                _state().connection, _state().settings.callback_queue, form.get("q", ""), MAX_TARGETS + 1
            )
        ]
    elif action.target == "quarantine":
        ids = [i.quarantine_id for i in _quarantined(form.get("q", ""))]
    else:
        ids = [
            n["raw"]
            for n in data.unhandled(_state().connection, form.get("type", ""), form.get("event", ""), MAX_TARGETS + 1)
        ]
    return ids[:MAX_TARGETS], len(ids) > MAX_TARGETS


def _back() -> str:
    """Where the result page links back to: a console path only (never another origin)."""
    target = request.form.get("next", "")
    if target.startswith("/dashboard") and "//" not in target and "\\" not in target:
        return target
    return "/dashboard/"


def _same_origin() -> bool:
    """A second lock besides the token: what the browser says about where the form came from.

    ``Sec-Fetch-Site``, when sent, must say same-origin; an ``Origin``, when sent, must be this host.
    Under ``Referrer-Policy: no-referrer`` Chromium sends ``Origin: null`` for our own forms, so
    ``null`` proves nothing either way and the token decides.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    return origin.split("://", 1)[-1] == request.host


@bp.post("/action/<name>")
def act(name: str) -> tuple[str, int] | str:
    """An action: without ``confirm=yes`` a confirmation page (nothing changes); with it, done and audited."""
    action = actions.ACTIONS.get(name)
    if action is None:
        abort(404)
    if not guard.csrf_valid(request.form.get("csrf"), _csrf_key()) or not _same_origin():
        log.warning("dashboard action refused: bad CSRF token or origin", extra={"outcome": "denied"})
        return _page("refused.html", None), 403
    targets, cut = _targets(action)
    if not targets:
        return _page("result.html", None, action=action, outcomes=[], back=_back(), nothing=True), 400
    labels = targets if action.target != "unhandled" else [_note_label(raw) for raw in targets]
    if request.form.get("confirm") != "yes":
        return _page(
            "confirm.html",
            None,
            action=action,
            targets=targets,
            labels=labels,
            cut=cut,
            back=_back(),
            form=request.form,
        )
    if action.target in ("failed", "scheduled"):
        malformed = [target for target in targets if not JOB_ID.fullmatch(target)]
        if malformed:
            return _page("result.html", None, action=action, outcomes=[], back=_back(), malformed=malformed), 400
    state = _state()
    actor = actions.Actor(DASHBOARD_USER, request.remote_addr or "", request.headers.get("X-Forwarded-For", ""))
    if action.run_all is not None:
        carried = {name: request.form.getlist(name)[:100] for name in action.carries}
        outcomes = actions.run_together(state, action, targets, carried, actor)
    else:
        outcomes = actions.run(state, action, targets)
    entry = actions.audit(state.connection, action.name, outcomes, actor)
    return _page("result.html", None, action=action, outcomes=outcomes, back=_back(), entry=entry, nothing=False)


def _note_label(raw: str) -> str:
    try:
        note = json.loads(raw)
        return f"{note.get('type')} {note.get('event') or 'completed'} task {note.get('task_id')}"
    except (ValueError, AttributeError):
        return raw


def init_app(app: Flask) -> None:
    """Mount the console only when a password is configured; otherwise it does not exist."""
    if receiver_state(app).settings.dashboard_password is not None:
        app.register_blueprint(bp)
