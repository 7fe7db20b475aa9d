"""Error reporting to Sentry (``SENTRY_DSN``): unhandled errors and failing handlers, never a body, key or header.

With ``SENTRY_DSN`` set, each process (web: ``create_app``; worker: ``python -m workers``; the
clock) calls :func:`init_sentry` once. sentry-sdk's Flask integration reports a request that
raised; its RQ integration reports a job that failed for good; its logging integration (on by
default) reports every ERROR record, so a failing handler is reported on each try, with the
fields of its log line. Every event is tagged with the delivery it concerns (``task_id``,
``type``, ``event``, ``delivery_id``, and ``request_id``/``handler`` when known).

What is sent is scrubbed twice: the SDK is told not to collect (no PII, no local variables, no
request bodies), and :func:`scrub_event` removes whatever request data, job arguments and extra
fields are left, so a header such as ``scale-callback-auth``, a cookie or a callback body never
leaves the process even if an integration starts collecting more.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from callback_server.config import Settings
from callback_server.logs import FIELDS
from callback_server.render import escape_unprintable

log = logging.getLogger(__name__)

TAGS = ("task_id", "type", "event", "delivery_id", "request_id", "handler", "mode", "source")
"""Fields promoted to Sentry tags, from the log record's fields or the running job's delivery."""

TAG_LENGTH = 200
"""Sentry's limit on a tag value."""

KEPT_REQUEST_KEYS = ("method", "url")
"""The only parts of a request an event keeps: no headers, cookies, query string, body or environ."""

KEPT_JOB_KEYS = ("job_id", "func", "description", "enqueued_at", "started_at")
"""The parts of RQ's job context an event keeps: ids and times, never the arguments (the body)."""


def _tag_value(value: object) -> str:
    """A tag value as Sentry accepts it: printable (sender-chosen ids escaped), at most 200 characters."""
    text = str(value)
    if not text.isprintable():
        text = escape_unprintable(text)
    return text[:TAG_LENGTH]


def _job_delivery() -> Mapping[str, Any]:
    """The delivery of the RQ job running in this process, if any (its envelope carries the ids)."""
    try:
        from rq import get_current_job

        job = get_current_job()
        if job is None or not job.args or not isinstance(job.args[0], Mapping):
            return {}
        return job.args[0]
    except Exception:  # a report must never fail for want of tags
        return {}


def scrub_event(event: dict[str, Any], hint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``before_send``: keep ids and the error, drop request data, job arguments and unlisted extras; add tags."""
    request = event.get("request")
    if isinstance(request, dict):
        event["request"] = {key: request[key] for key in KEPT_REQUEST_KEYS if key in request}
    extra = event.get("extra")
    if isinstance(extra, dict):
        kept: dict[str, Any] = {name: extra[name] for name in FIELDS if name in extra}
        job = extra.get("rq-job")
        if isinstance(job, dict):
            kept["rq-job"] = {key: job[key] for key in KEPT_JOB_KEYS if key in job}
        event["extra"] = kept
    else:
        extra = {}
    tags = event.setdefault("tags", {})
    delivery = _job_delivery()
    for name in TAGS:
        value = extra.get(name)
        if value is None:
            value = delivery.get(name)
        if value is not None:
            tags[name] = _tag_value(value)
    job = event.get("extra", {}).get("rq-job")
    if "delivery_id" not in tags and isinstance(job, dict) and job.get("job_id"):
        # RQ reports a failed job after it ran, outside the job's context; its id is the delivery's.
        tags["delivery_id"] = _tag_value(job["job_id"])
    event.pop("user", None)
    return event


def tag_delivery(delivery: Mapping[str, Any]) -> None:
    """Tag whatever the current scope reports (in a job: the job's own scope) with the delivery's ids.

    The worker calls it as a job starts, so RQ's report of a job that failed for good, made after
    the job's context is gone, still names the task, type and event. Costs nothing without Sentry.
    """
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None or not sentry_sdk.get_client().is_active():
        # Not imported means not initialised: importing it here would cost every forked job ~0.1 s.
        return
    scope = sentry_sdk.get_current_scope()
    for name in TAGS:
        value = delivery.get(name)
        if value is not None:
            scope.set_tag(name, _tag_value(value))


def scrub_breadcrumb(crumb: dict[str, Any], hint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``before_breadcrumb``: a log breadcrumb keeps only the structured fields of its record."""
    data = crumb.get("data")
    if isinstance(data, dict):
        crumb["data"] = {name: data[name] for name in FIELDS if name in data}
    return crumb


def init_sentry(settings: Settings, component: str, *, transport: Any = None) -> bool:
    """Start reporting to Sentry if SENTRY_DSN is set; True if it did. ``component``: web, worker or clock.

    ``transport`` replaces the HTTP one (the tests capture events with it).
    """
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.integrations.rq import RqIntegration

    options: dict[str, Any] = {
        "dsn": settings.sentry_dsn.reveal(),
        "integrations": [FlaskIntegration(), RqIntegration()],
        # Collect nothing about people or payloads: no user or IP, no cookies, headers or query
        # string, no request bodies, no job arguments, no local variables in stack frames (a
        # handler's locals hold the task). This is send_default_pii=False made explicit: the
        # pinned sentry-sdk deprecates that flag (a DeprecationWarning) for data_collection.
        "data_collection": {
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "off"}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "graphql": {"document": False, "variables": False},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        "include_local_variables": False,
        "max_request_body_size": "never",
        "before_send": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        # Errors only: no performance tracing.
        "traces_sample_rate": None,
    }
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    sentry_sdk.set_tag("component", component)
    log.info("reporting errors to Sentry as %s", component)
    return True
