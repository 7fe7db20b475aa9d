"""The errors of the receiver: each carries the HTTP status it maps to, in one place."""

from __future__ import annotations


class CallbackServerError(Exception):
    """Base of every error the receiver raises on purpose."""

    status_code: int = 500
    error: str = "internal_error"

    def __init__(self, message: str, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(CallbackServerError):
    """A missing or malformed environment variable; the process must not start."""


class CallbackAuthError(CallbackServerError):
    """The scale-callback-auth header is missing or matches no configured key."""

    status_code = 401
    error = "unauthorized"


class UnsupportedMediaTypeError(CallbackServerError):
    """The body is not declared as JSON."""

    status_code = 415
    error = "unsupported_media_type"


class PayloadTooLargeError(CallbackServerError):
    """The body is over MAX_CONTENT_LENGTH."""

    status_code = 413
    error = "payload_too_large"


class MalformedRequestError(CallbackServerError):
    """The request's own framing is broken (e.g. a bad chunk size): there is no body to keep."""

    status_code = 400
    error = "malformed_request"


class InvalidCallbackError(CallbackServerError):
    """An authenticated body that is not JSON or fails validation: it is quarantined, not refused."""

    status_code = 422
    error = "invalid_callback"


class StoreUnavailableError(CallbackServerError):
    """Redis did not answer in time: answer 503 so Scale retries, and mark nothing as seen."""

    status_code = 503
    error = "store_unavailable"


class HandlerRegistrationError(CallbackServerError):
    """A handler was registered twice, or a CALLBACK_HANDLERS module could not be imported."""


class NotFoundError(CallbackServerError):
    """A quarantined delivery or failed job named on the command line does not exist."""

    status_code = 404
    error = "not_found"
