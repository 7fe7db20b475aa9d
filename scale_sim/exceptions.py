"""The simulator's errors; API errors carry the HTTP status Scale documents for them."""

from __future__ import annotations


class ScaleSimError(Exception):
    """Base of every error the simulator raises on purpose."""


class SimConfigError(ScaleSimError):
    """A malformed SCALE_SIM_* (or PORT) variable; the message names it and the process must not start."""


class FaultSpecError(ScaleSimError, ValueError):
    """A fault name or value that the simulator does not know."""


class ApiError(ScaleSimError):
    """An error answered over the API as Scale does: ``{"status_code": N, "error": "..."}``."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(ApiError):
    """A missing or malformed parameter (400)."""

    status_code = 400


class UnauthorizedError(ApiError):
    """No API key, or one that is neither a test_ nor a live_ key (401)."""

    status_code = 401


class TaskNotFoundError(ApiError):
    """No task with this id in the caller's account (404)."""

    status_code = 404


class DuplicateTaskError(ApiError):
    """A create with a `unique_id` that another of the account's tasks already has (409, as Scale answers)."""

    status_code = 409


class RateLimitedError(ApiError):
    """The key went over SCALE_SIM_RATE_LIMIT (429); ``retry_after`` is in seconds."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TaskStateError(ApiError):
    """The task is not pending: Scale answers 500 to canceling a completed task, and so do we."""

    status_code = 500
