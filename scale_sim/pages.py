"""A small HTML page (`GET /` and `GET /sim/`): pending tasks with a form to complete each by hand,
and a page per task (`GET /sim/task/{id}`) with its other events: fail at creation, audit, recall.

The pages and their form posts are not authenticated (they show every account's tasks, named by
a key-free label), which is why the simulator binds to loopback by default and refuses
cross-origin posts (:mod:`scale_sim.origin`). Values are only ever placed in the HTML by
autoescaping, never as pre-rendered markup, so a hostile task cannot add attributes or tags.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from scale_sim.exceptions import ApiError, InvalidRequestError
from scale_sim.responses import PHONECALL_OUTCOMES, generate_response
from scale_sim.simulator import Simulator
from scale_sim.tasks import AUDIT_RESULTS, AUDIT_SOURCES

bp = Blueprint("scale_sim_pages", __name__, template_folder="templates")

RECENT = 25
"""How many finished tasks the page lists under the pending ones."""

EXAMPLE_CALLBACK_URL = "http://127.0.0.1:5000/callback"
"""The callback URL the page's example uses without SCALE_SIM_DEFAULT_CALLBACK_URL: `make run`'s receiver."""


def error_page(message: str, status: int) -> tuple[str, int]:
    """The page's error answer (escaped message, a link back)."""
    return render_template("scale_sim/error.html", message=message), status


def _pretty(value: Any) -> str:
    """JSON text for a textarea or attribute: a plain str, so autoescaping quotes every character."""
    return json.dumps(value, indent=2)


def _sim() -> Simulator:
    sim: Simulator = current_app.extensions["scale_sim"]
    return sim


def _field_values(task: dict[str, Any], form: MultiDict[str, str]) -> dict[str, str]:
    return {key: form.get(f"field.{key}", "") for key in task["params"].get("fields", {})}


def _number(form: MultiDict[str, str], name: str) -> float:
    try:
        return float(form.get(name, ""))
    except ValueError:
        raise InvalidRequestError(f"{name} must be a number") from None


def _json_object(form: MultiDict[str, str], name: str, what: str) -> dict[str, Any] | None:
    """A form box holding a JSON object; None when empty."""
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequestError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{what} must be a JSON object")
    return value


def response_from_form(task: dict[str, Any], form: MultiDict[str, str]) -> dict[str, Any]:
    """The response a page form describes for `task`; a non-empty raw JSON box overrides the controls."""
    raw = _json_object(form, "raw_json", "the raw response")
    if raw is not None:
        return raw
    params = task["params"]
    kind = task["type"]
    response: dict[str, Any] = {}
    if kind == "categorization":
        chosen = form.getlist("category")
        if not chosen:
            raise InvalidRequestError("choose a category")
        ids = {value: key for key, value in params.get("category_ids", {}).items()}
        if params.get("allow_multiple"):
            response["category"] = chosen
            if ids:
                response["category_id"] = [ids[c] for c in chosen if c in ids]
        else:
            response["category"] = chosen[0]
            if chosen[0] in ids:
                response["category_id"] = ids[chosen[0]]
    elif kind in ("transcription", "datacollection"):
        response["fields"] = _field_values(task, form)
    elif kind in ("phonecall", "comparison"):
        if kind == "phonecall":
            response["outcome"] = form.get("outcome", "success")
        if params.get("choices"):
            response["choice"] = form.get("choice", params["choices"][0])
        if params.get("fields"):
            response["fields"] = _field_values(task, form)
    elif kind == "annotation":
        try:
            boxes = json.loads(form.get("annotations", "[]") or "[]")
        except ValueError:
            raise InvalidRequestError("annotations must be a JSON list of boxes") from None
        if not isinstance(boxes, list):
            raise InvalidRequestError("annotations must be a JSON list of boxes")
        response["annotations"] = boxes
    elif kind == "audiotranscription":
        if form.get("error", "").strip():
            response["error"] = form["error"].strip()
            if form.get("transcript", "").strip():
                response["transcript"] = form["transcript"].strip()
        else:
            response["transcript"] = form.get("transcript", "")
            response["duration"] = _number(form, "duration")
    else:
        raise InvalidRequestError(f"give the {kind} response as JSON (the raw response box)")
    return response


@bp.get("/")
@bp.get("/sim/")
def index() -> str:
    """Pending tasks with a completion form each, then the latest finished ones."""
    sim = _sim()
    pending = sim.store.recent_tasks(status="pending", limit=100)
    suggestions = {task["task_id"]: generate_response(task, sim.settings.seed) for task in pending}
    recent = [task for task in sim.store.recent_tasks(limit=RECENT + len(pending)) if task["status"] != "pending"]
    return render_template(
        "scale_sim/index.html",
        pending=pending,
        suggestions=suggestions,
        suggestion_json={task_id: _pretty(value) for task_id, value in suggestions.items()},
        recent=recent[:RECENT],
        outcomes=PHONECALL_OUTCOMES,
        message=request.args.get("message"),
        running=sim.running,
        settings=sim.settings,
        example_callback_url=sim.settings.default_callback_url or EXAMPLE_CALLBACK_URL,
    )


@bp.get("/sim/task/<task_id>")
def task_page(task_id: str) -> str | tuple[str, int]:
    """One task: its object, its delivery log, and a form for each event it can go through now."""
    sim = _sim()
    try:
        task = sim.store.get_task(task_id)
    except ApiError as exc:
        return error_page(exc.message, exc.status_code)
    deliveries, attempts = sim.store.delivery_log(task_id)
    suggestion = generate_response(task, sim.settings.seed) if task["status"] == "pending" else None
    return render_template(
        "scale_sim/task.html",
        task=task,
        task_json=_pretty(task),
        suggestions={task_id: suggestion},
        suggestion_json={task_id: _pretty(suggestion)},
        deliveries=deliveries,
        attempts=attempts,
        outcomes=PHONECALL_OUTCOMES,
        audit_results=AUDIT_RESULTS,
        audit_sources=AUDIT_SOURCES,
        completion_delay=sim.settings.completion_delay,
        message=request.args.get("message"),
    )


def _back(task_id: str, message: str) -> BaseResponse:
    return redirect(url_for("scale_sim_pages.task_page", task_id=task_id, message=message), code=303)


@bp.post("/sim/task/<task_id>/complete")
def complete(task_id: str) -> BaseResponse | tuple[str, int]:
    """Complete a task from the page's form, then show the page again."""
    sim = _sim()
    try:
        task = sim.store.get_task(task_id)
        sim.complete_task(task_id, response_from_form(task, request.form))
    except ApiError as exc:
        return error_page(exc.message, exc.status_code)
    return redirect(url_for("scale_sim_pages.index", message=f"Completed {task_id}"), code=303)


@bp.post("/sim/task/<task_id>/error")
def fail(task_id: str) -> BaseResponse | tuple[str, int]:
    """Fail a pending task at creation from its page (the error callback goes out)."""
    try:
        _sim().error_task(task_id, request.form.get("message", "").strip() or None)
    except ApiError as exc:
        return error_page(exc.message, exc.status_code)
    return _back(task_id, f"Failed {task_id} at creation")


@bp.post("/sim/task/<task_id>/audit")
def audit(task_id: str) -> BaseResponse | tuple[str, int]:
    """Audit a completed task from its page; a fixed audit takes the JSON box's response or a generated one."""
    form = request.form
    result = form.get("result", "")
    try:
        response = _json_object(form, "response_json", "the fixed response") if result == "fixed" else None
        _sim().audit_task(
            task_id,
            result,
            response=response,
            source=form.get("source", "customer"),
            audited_by=form.get("audited_by", "").strip() or None,
        )
    except ApiError as exc:
        return error_page(exc.message, exc.status_code)
    return _back(task_id, f"Audited {task_id}: {result}")


@bp.post("/sim/task/<task_id>/recall")
def recall(task_id: str) -> BaseResponse | tuple[str, int]:
    """Recall a completed task from its page; it completes again after the delay given, or only by hand."""
    form = request.form
    sim = _sim()
    try:
        if form.get("manual"):
            sim.recall_task(task_id, complete_in=None)
        elif form.get("complete_in", "").strip():
            seconds = _number(form, "complete_in")
            if not 0 <= seconds < 10**9:
                raise InvalidRequestError("complete_in must be a number of seconds >= 0")
            sim.recall_task(task_id, complete_in=seconds)
        else:
            sim.recall_task(task_id)
    except ApiError as exc:
        return error_page(exc.message, exc.status_code)
    return _back(task_id, f"Recalled {task_id}")
