"""A small HTML page (`GET /` and `GET /sim/`): pending tasks, each with a form to complete it by hand.

The page and its form post are not authenticated (it shows every account's tasks, named by a
key-free label), which is why the simulator binds to loopback by default.
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

bp = Blueprint("scale_sim_pages", __name__, template_folder="templates")

RECENT = 25
"""How many finished tasks the page lists under the pending ones."""


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


def response_from_form(task: dict[str, Any], form: MultiDict[str, str]) -> dict[str, Any]:
    """The response a page form describes for `task`; a non-empty raw JSON box overrides the controls."""
    raw = form.get("raw_json", "").strip()
    if raw:
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidRequestError("the raw response is not valid JSON") from None
        if not isinstance(value, dict):
            raise InvalidRequestError("the raw response must be a JSON object")
        return value
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
    return response


@bp.get("/")
@bp.get("/sim/")
def index() -> str:
    """Pending tasks with a completion form each, then the latest finished ones."""
    sim = _sim()
    pending = sim.store.recent_tasks(status="pending", limit=100)
    suggestions = {task["task_id"]: generate_response(task, sim.settings.seed) for task in pending}
    recent = [
        task for task in sim.store.recent_tasks(limit=RECENT + len(pending)) if task["status"] != "pending"
    ]
    return render_template(
        "scale_sim/index.html",
        pending=pending,
        suggestions=suggestions,
        recent=recent[:RECENT],
        outcomes=PHONECALL_OUTCOMES,
        message=request.args.get("message"),
        running=sim.running,
        settings=sim.settings,
    )


@bp.post("/sim/task/<task_id>/complete")
def complete(task_id: str) -> BaseResponse | tuple[str, int]:
    """Complete a task from the page's form, then show the page again."""
    sim = _sim()
    try:
        task = sim.store.get_task(task_id)
        sim.complete_task(task_id, response_from_form(task, request.form))
    except ApiError as exc:
        return render_template("scale_sim/error.html", message=exc.message), exc.status_code
    return redirect(url_for("scale_sim_pages.index", message=f"Completed {task_id}"), code=303)
