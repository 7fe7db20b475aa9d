"""The dashboard: absent without a password, basic auth, read-only."""

from __future__ import annotations

import base64
from dataclasses import replace

import redis
from flask import Flask

from callback_server import create_app
from callback_server.config import Secret, Settings
from tests.callback_server.test_ingest import post
from tests.conftest import load_fixture


def auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def dashboard_app(settings: Settings) -> Flask:
    return create_app(replace(settings, dashboard_password=Secret("s3cret")))


def test_no_password_no_dashboard(client: object) -> None:
    assert client.get("/dashboard/").status_code == 404  # type: ignore[attr-defined]


def test_wrong_or_missing_credentials_get_401(settings: Settings) -> None:
    client = dashboard_app(settings).test_client()
    assert client.get("/dashboard/").status_code == 401
    assert client.get("/dashboard/").headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/dashboard/", headers=auth("ops", "wrong")).status_code == 401
    assert client.get("/dashboard/", headers=auth("admin", "s3cret")).status_code == 401


def test_dashboard_shows_counts_and_changes_nothing(settings: Settings, redis_conn: redis.Redis) -> None:
    client = dashboard_app(settings).test_client()
    post(client, load_fixture("categorization"))
    post(client, b"{bad json")
    before = sorted(redis_conn.keys("*"))
    page = client.get("/dashboard/", headers=auth("ops", "s3cret"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "queued" in html and "quarantined" in html
    assert "body is not valid JSON" in html
    assert "{bad json" not in html
    assert sorted(redis_conn.keys("*")) == before
    assert page.headers["Cache-Control"] == "no-store"
