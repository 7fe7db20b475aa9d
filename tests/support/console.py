"""The ops console through Flask's test client: its app with a password, pages read, actions posted."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from callback_server.config import Secret, Settings
from callback_server.web import create_app

PASSWORD = "s3cret-console-password"
"""The console's password in these tests (DASHBOARD_PASSWORD)."""


def auth(user: str = "ops", password: str = PASSWORD) -> dict[str, str]:
    """The Basic Authorization header of a console user."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def dashboard_app(settings: Settings) -> Flask:
    """The receiver app with its console on (our password); the caller stops its tally."""
    app = create_app(replace(settings, dashboard_password=Secret(PASSWORD)))
    app.config["TESTING"] = True
    return app


def fetch(client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> Any:
    """A GET whose answer is read and closed (a static file is streamed from an open file)."""
    with client.get(path, headers=headers or {}) as answer:
        answer.get_data()
    return answer


def page(client: FlaskClient, path: str, status: int = 200) -> str:
    """A console page's HTML, fetched as the logged-in user; fails unless it answers ``status``."""
    answer = fetch(client, path, auth())
    assert answer.status_code == status, (path, answer.status_code, answer.get_data(as_text=True)[:500])
    return str(answer.get_data(as_text=True))


def csrf_of(html: str) -> str:
    """The CSRF token of a console page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def act(
    client: FlaskClient,
    name: str,
    *,
    confirm: bool = True,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> Any:
    """POST the console action ``name`` with ``fields``, a fresh CSRF token (unless given) and the
    confirmation (unless ``confirm=False``)."""
    token = token if token is not None else csrf_of(page(client, "/dashboard/reconciliation"))
    form: dict[str, Any] = {"csrf": token, "next": "/dashboard/", **fields}
    if confirm:
        form["confirm"] = "yes"
    return client.post(f"/dashboard/action/{name}", data=form, headers={**auth(), **(headers or {})})
