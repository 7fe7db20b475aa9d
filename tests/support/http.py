"""Posting callbacks: to the app's Flask test client, or over HTTP to a running receiver."""

from __future__ import annotations

import json
from typing import Any

import requests
from flask.testing import FlaskClient

from tests.support.keys import LIVE_KEY


def post(client: FlaskClient, body: Any, key: str | None = LIVE_KEY, **kwargs: Any) -> Any:
    """POST a callback (a dict, or bytes or text as they are) to /callback, with our live key unless told
    otherwise (``key=None``: no header); ``headers`` and ``content_type`` go with it."""
    headers = {"scale-callback-auth": key} if key is not None else {}
    headers.update(kwargs.pop("headers", {}))
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        "/callback", data=data, headers=headers, content_type=kwargs.pop("content_type", "application/json"), **kwargs
    )


def post_callback(
    base: str, body: object, *, key: str | None = None, request_id: str | None = None
) -> requests.Response:
    """POST a callback (a dict, or text as it is) to a running receiver at ``base``, with our live key by default."""
    headers = {"scale-callback-auth": key or LIVE_KEY, "Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(f"{base}/callback", data=data, headers=headers, timeout=10)


def answers(url: str) -> bool:
    """True once the URL answers 200 (a refused connection is just "not yet")."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False
