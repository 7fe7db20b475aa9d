"""The Scale v1 API as documented, plus the simulator's extensions, as one blueprint under /v1.

Documented: create (`POST /v1/task/{type}`), retrieve, cancel, list. Extensions (each sends the
callback its event calls for): complete a task by hand (`POST /v1/task/{id}/complete`), fail it at
creation (`.../error`), audit it (`.../audit`), recall it (`.../recall`), move its created_at back
(`.../backdate`, time made to pass without sleeping), and read its delivery log
(`GET /v1/task/{id}/deliveries`). Errors are answered as Scale does:
``{"status_code": N, "error": "..."}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from scale_sim.auth import Account, account_for_key
from scale_sim.exceptions import ApiError, InvalidRequestError, RateLimitedError
from scale_sim.forms import parse_form
from scale_sim.pagination import ListQuery
from scale_sim.simulator import Simulator
from scale_sim.tasks import timestamp_ms
from scale_sim.validation import validate_task

bp = Blueprint("scale_sim_api", __name__, url_prefix="/v1")


def _sim() -> Simulator:
    sim: Simulator = current_app.extensions["scale_sim"]
    return sim


def _account() -> Account:
    account: Account = g.scale_sim_account
    return account


def error_response(status_code: int, message: str) -> Response:
    """Scale's error body, with the status it names."""
    answer = jsonify({"status_code": status_code, "error": message})
    answer.status_code = status_code
    return answer


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    answer = error_response(exc.status_code, exc.message)
    if isinstance(exc, RateLimitedError):
        answer.headers["Retry-After"] = str(exc.retry_after)
    if exc.status_code == 401:
        answer.headers["WWW-Authenticate"] = 'Basic realm="Scale API"'
    return answer


def http_error(exc: HTTPException) -> Response:
    """Werkzeug's own errors (unknown route, wrong method) under /v1, in Scale's error shape."""
    return error_response(exc.code or 500, exc.description or exc.name)


@bp.before_request
def _authenticate() -> None:
    authorization = request.authorization
    key = authorization.username if authorization is not None and authorization.type == "basic" else None
    account = account_for_key(key)
    wait = _sim().limiter.retry_after(account.id)
    if wait is not None:
        raise RateLimitedError("Too many requests; slow down", retry_after=wait)
    g.scale_sim_account = account


def _body() -> tuple[dict[str, Any], bool]:
    """The request's parameters and whether they came form-encoded (strings that need converting)."""
    if request.is_json:
        if not request.get_data():
            return {}, False
        data = request.get_json(silent=True)
        if data is None:
            raise InvalidRequestError("The request body is not valid JSON")
        if not isinstance(data, dict):
            raise InvalidRequestError("The request body must be a JSON object")
        return data, False
    return parse_form(request.form.items(multi=True)), True


@bp.post("/task/<task_type>")
def create_task(task_type: str) -> Response:
    """Create a task of one of the seven documented types (`categorize` is categorization)."""
    data, form = _body()
    sim = _sim()
    spec = validate_task(task_type, data, form=form, default_callback_url=sim.settings.default_callback_url)
    return jsonify(sim.create_task(_account(), spec))


@bp.get("/task/<task_id>")
def get_task(task_id: str) -> Response:
    """Retrieve one of the caller's tasks (404 for unknown ids and other accounts' tasks)."""
    return jsonify(_sim().get_task(_account(), task_id))


@bp.post("/task/<task_id>/cancel")
def cancel_task(task_id: str) -> Response:
    """Cancel a pending task; a completed one answers 500, as the reference says."""
    return jsonify(_sim().cancel_task(_account(), task_id))


@bp.post("/task/<task_id>/complete")
def complete_task(task_id: str) -> Response:
    """Sim extension: complete a pending task with the given ``{"response": {...}}`` and send its callback."""
    data, _ = _body()
    response = data.get("response")
    if not isinstance(response, dict):
        raise InvalidRequestError("Missing required parameter: response (a JSON object)")
    return jsonify(_sim().complete_task(task_id, response, _account()))


def _optional_string(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"Invalid parameter {name!r}: must be a non-empty string")
    return value


def _optional_seconds(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10**9:
        raise InvalidRequestError(f"Invalid parameter {name!r}: must be a number of seconds >= 0")
    return float(value)


@bp.post("/task/<task_id>/error")
def error_task(task_id: str) -> Response:
    """Sim extension: fail a pending task at creation (``{"message": "..."}`` optional) and send the error callback."""
    data, _ = _body()
    return jsonify(_sim().error_task(task_id, _optional_string(data, "message"), _account()))


@bp.post("/task/<task_id>/audit")
def audit_task(task_id: str) -> Response:
    """Sim extension: audit a completed task and send the audit callback.

    ``{"result": "accepted"|"fixed"|"rejected"|"commented", "response": {...}?, "source": "customer"|"scale"?,
    "audited_by": "email"?, "audit_time_secs": N?}``; a fixed audit without a response gets a generated one.
    """
    data, _ = _body()
    result = data.get("result")
    if not isinstance(result, str) or not result:
        raise InvalidRequestError("Missing required parameter: result (accepted, fixed, rejected or commented)")
    response = data.get("response")
    if response is not None and not isinstance(response, dict):
        raise InvalidRequestError("Invalid parameter 'response': must be a JSON object")
    seconds = _optional_seconds(data, "audit_time_secs")
    return jsonify(
        _sim().audit_task(
            task_id,
            result,
            account=_account(),
            response=response,
            source=_optional_string(data, "source") or "customer",
            audited_by=_optional_string(data, "audited_by"),
            audit_time_secs=None if seconds is None else int(seconds),
        )
    )


@bp.post("/task/<task_id>/recall")
def recall_task(task_id: str) -> Response:
    """Sim extension: send a completed task back to pending and send the recall callback.

    ``{"complete_in": seconds}`` (optional) sets when it completes again by itself; ``null`` leaves
    it for a manual completion; absent means SCALE_SIM_COMPLETION_DELAY.
    """
    data, _ = _body()
    sim = _sim()
    if "complete_in" in data:
        return jsonify(sim.recall_task(task_id, _account(), complete_in=_optional_seconds(data, "complete_in")))
    return jsonify(sim.recall_task(task_id, _account()))


@bp.post("/task/<task_id>/backdate")
def backdate_task(task_id: str) -> Response:
    """Sim extension: move created_at back, to ``{"created_at": ISO}`` or by ``{"seconds": N}``.

    This is how a test makes time pass without sleeping: a task completed now looks as if it took that long.
    """
    data, _ = _body()
    sim = _sim()
    raw, seconds = data.get("created_at"), _optional_seconds(data, "seconds")
    if (raw is None) == (seconds is None):
        raise InvalidRequestError("Missing required parameter: exactly one of created_at or seconds")
    if raw is not None:
        if not isinstance(raw, str):
            raise InvalidRequestError("Invalid parameter 'created_at': must be an ISO 8601 date")
        try:
            created_ms = timestamp_ms(raw)
        except ValueError:
            raise InvalidRequestError(
                f"Invalid parameter 'created_at': must be an ISO 8601 date, got {raw!r}"
            ) from None
    else:
        task = sim.get_task(_account(), task_id)
        created_ms = timestamp_ms(task["created_at"]) - int((seconds or 0) * 1000)
    if created_ms < 0:
        raise InvalidRequestError("Invalid parameter 'created_at': must be after 1970")
    return jsonify(sim.backdate_task(_account(), task_id, created_ms))


@bp.get("/task/<task_id>/deliveries")
def task_deliveries(task_id: str) -> Response:
    """Sim extension: the task's callback copies and every try (attempt, time, status code or error)."""
    return jsonify(_sim().delivery_log(_account(), task_id))


@bp.get("/tasks")
def list_tasks() -> Response:
    """List the caller's tasks newest first, paged by offset or next_token."""
    query = ListQuery.from_args(request.args)
    return jsonify(_sim().list_tasks(_account(), query))
