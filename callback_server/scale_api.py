"""The Scale API client: just what reconciliation, ``fetch`` and ``doctor`` ask of it, politely.

Basic auth with the API key (never printed: a refusing answer that quotes it is redacted); 408,
429, 5xx and connection failures retried with exponential backoff and jitter, honouring
``Retry-After``; list paging by ``next_token`` or ``offset``, with guards against paging loops.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from callback_server.config import Secret
from callback_server.exceptions import CallbackServerError
from callback_server.render import shorten

log = logging.getLogger(__name__)

PAGE_SIZE = 100
"""Tasks per list request: the API's maximum."""

MAX_PAGES = 10_000
"""A slice stops (and says so) rather than follow a paging loop forever."""

API_RETRIES = 8
"""408, 429 and 5xx answers (or connection failures) retried in a row before the run gives up."""

BACKOFF = 1.0
"""Seconds of the first wait between API retries; doubled on each retry, with jitter."""

MAX_BACKOFF = 60.0
"""The longest single wait between API retries, whatever Retry-After says."""

RETRYABLE_STATUSES = frozenset({408, 429})
"""Client-side statuses that mean "try again later" (the official client retries these and 5xx)."""

KEY_STATUSES = frozenset({401, 403})
"""The API refuses the key: no project can be listed, so the whole run stops."""


class ScaleAPIError(CallbackServerError):
    """The Scale API refused (4xx), kept failing (408, 429, 5xx, unreachable), or answered nonsense.

    ``stops_run``: no other project can be listed either (the key is refused, or the API is down).
    """

    def __init__(self, message: str, *, status: int | None = None, stops_run: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.stops_run = stops_run


class ScaleAPI:
    """Just enough of the Scale v1 API for reconciliation, fetch and doctor: one task, or task lists, politely."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        retries: int = API_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._auth = (api_key.reveal(), "")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retries = retries
        self.sleep = sleep
        self.jitter = jitter

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self.session.close()

    def _redact(self, text: str) -> str:
        """An API message may quote the key it refused; it never reaches a summary or a log."""
        key = self._key.reveal()
        return text.replace(key, str(self._key)) if key else text

    def wait_before_retry(self, failures: int, retry_after: str | None) -> float:
        """Retry-After when the answer has one (bounded); else exponential backoff with equal jitter."""
        asked = _retry_after(retry_after)
        if asked is not None:
            return min(asked, self.max_backoff)
        ceiling = min(self.backoff * 2 ** (failures - 1), self.max_backoff)
        # Half fixed, half random: clocks that failed together do not come back together.
        return float(ceiling * (0.5 + 0.5 * self.jitter()))

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        failures = 0
        while True:
            status: int | None = None
            retry_after: str | None = None
            try:
                response = self.session.get(
                    f"{self.base_url}/{path}", params=params, auth=self._auth, timeout=self.timeout
                )
            except requests.RequestException as exc:
                reason = f"unreachable ({type(exc).__name__})"
            else:
                status = response.status_code
                if status == 200:
                    return _json_object(path, response)
                if status < 500 and status not in RETRYABLE_STATUSES:
                    message = self._redact(_error_text(response))
                    raise ScaleAPIError(
                        f"GET {path}: HTTP {status}: {message}", status=status, stops_run=status in KEY_STATUSES
                    )
                reason = f"HTTP {status}"
                retry_after = response.headers.get("Retry-After")
            failures += 1
            if failures > self.retries:
                raise ScaleAPIError(f"GET {path}: {reason} after {failures} tries", status=status)
            wait = self.wait_before_retry(failures, retry_after)
            log.warning(
                "scale api: %s; retrying",
                reason,
                extra={"status": status, "attempt": failures, "wait_s": f"{wait:.3f}"},
            )
            self.sleep(wait)

    def get_task(self, task_id: str) -> dict[str, Any]:
        """One task as ``GET task/{id}`` answers it; a 404 (unknown id) raises with ``status`` 404."""
        return self._get(f"task/{quote(task_id, safe='')}", {})

    def list_page(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """One answer of the list API as it comes (``total``, ``docs``, ...), with the same retries."""
        return self._get("tasks", params)

    def list_tasks(
        self, params: Mapping[str, Any], *, on_page: Callable[[Mapping[str, Any]], None] | None = None
    ) -> Iterator[Any]:
        """Every task the list API answers for ``params``, following ``next_token`` (or ``offset``) paging.

        One page is held at a time; ``on_page`` sees each answer (its ``total``, for a progress bar).
        """
        query: dict[str, Any] = {**params, "limit": PAGE_SIZE}
        offset = 0
        seen_tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self._get("tasks", query)
            docs = page.get("docs")
            if not isinstance(docs, list):
                raise ScaleAPIError("GET tasks: answer has no docs list", stops_run=False)
            if on_page is not None:
                on_page(page)
            yield from docs
            token = page.get("next_token")
            if token:
                if not isinstance(token, str) or token in seen_tokens:
                    raise ScaleAPIError("GET tasks: next_token repeats; paging would never end", stops_run=False)
                seen_tokens.add(token)
                query.pop("offset", None)
                query["next_token"] = token
            elif page.get("has_more"):
                if not docs:
                    raise ScaleAPIError(
                        "GET tasks: has_more with an empty page; paging would never end", stops_run=False
                    )
                query.pop("next_token", None)
                offset += len(docs)
                query["offset"] = offset
            else:
                return
        raise ScaleAPIError(f"GET tasks: more than {MAX_PAGES} pages in one slice", stops_run=False)


def _json_object(path: str, response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise ScaleAPIError(f"GET {path}: answer is not JSON", stops_run=False) from None
    if not isinstance(data, dict):
        raise ScaleAPIError(f"GET {path}: answer is not a JSON object", stops_run=False)
    return data


def _retry_after(header: str | None) -> float | None:
    """Seconds a Retry-After header asks for (a number or an HTTP date), or None when it says nothing usable."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # nan
        return None
    return max(0.0, seconds)


def _error_text(response: requests.Response) -> str:
    try:
        data = response.json()
        text = str(data.get("error") or data.get("message") or "") if isinstance(data, dict) else ""
    except ValueError:
        text = ""
    return shorten(text or response.text or "(no message)", 200)
