"""The errors of the receiver, in one place.

Two kinds, as werkzeug's ``HTTPException`` and structlog's plain exceptions are kept apart:
:class:`HTTPError` and its subclasses become an HTTP answer (their status and error name, mapped
in :mod:`callback_server.web.error_handlers`); the others never reach HTTP (a bad setting stops a
process, a handler module that cannot be imported stops a worker) and carry no status.
"""

from __future__ import annotations


class CallbackServerError(Exception):
    """Base of every error the receiver raises on purpose: a message, and details for the curious."""

    def __init__(self, message: str, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class HTTPError(CallbackServerError):
    """An error that is answered over HTTP: its status and a short error name go in the answer."""

    status_code: int = 500
    error: str = "internal_error"


class ConfigError(CallbackServerError):
    """A missing or malformed environment variable; the process must not start."""


class CallbackAuthError(HTTPError):
    """The scale-callback-auth header is missing or matches no configured key."""

    status_code = 401
    error = "unauthorized"


class UnsupportedMediaTypeError(HTTPError):
    """The body is not declared as JSON."""

    status_code = 415
    error = "unsupported_media_type"


class PayloadTooLargeError(HTTPError):
    """The body is over MAX_CONTENT_LENGTH."""

    status_code = 413
    error = "payload_too_large"


class MalformedRequestError(HTTPError):
    """The request's own framing is broken (e.g. a bad chunk size): there is no body to keep."""

    status_code = 400
    error = "malformed_request"


class InvalidCallbackError(CallbackServerError):
    """An authenticated body that is not JSON or fails validation: it is quarantined, not refused."""


class UnkeepableError(CallbackServerError):
    """A refused body could not even be quarantined (not by a Redis error): nothing was stored.

    The accept path raises it so no caller mistakes a lost body for a kept one: the web tier
    answers 503 (Scale tries again), the reconciler counts the task as an error and names it.
    """

    def __init__(self, cause: str, error: str) -> None:
        super().__init__(f"{cause}, and not kept: {error}")
        self.cause = cause
        """Why the body was refused: the validation's message, or the unexpected error's."""
        self.error = error
        """The type of the error that kept it from the quarantine."""


class StoreUnavailableError(HTTPError):
    """Redis did not answer in time: answer 503 so Scale retries, and mark nothing as seen."""

    status_code = 503
    error = "store_unavailable"


class HandlerRegistrationError(CallbackServerError):
    """A handler was registered twice, or a CALLBACK_HANDLERS module could not be imported."""


class NotFoundError(CallbackServerError):
    """A quarantined delivery or failed job named on the command line does not exist."""


class FailureNotRecordedError(CallbackServerError):
    """Redis refused the record of a job's failed try (full, or gone): the job stays where it was.

    RQ logs and swallows such a refusal, and some of its callers then take the job off the list it
    was on (a removal Redis allows even when full), leaving it in no list or registry. Raised
    instead, it stops that caller, so RQ's next maintenance finds the job where it was.
    """


class RerunError(CallbackServerError):
    """A rerun cannot start or go on: an unknown handler name, an unknown or finished run, a bad selection."""


class NoSuchFixtureError(CallbackServerError, LookupError):
    """``workers.testing.load_fixture`` has no recorded callback for that type, event and review status."""
