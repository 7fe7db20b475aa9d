"""The dashboard: absent without a password, basic auth, read-only."""

from __future__ import annotations

import base64
import hashlib
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


def test_both_paths_answer_without_a_redirect_whatever_the_host(settings: Settings) -> None:
    client = dashboard_app(settings).test_client()
    for path in ("/dashboard", "/dashboard/"):
        for headers in ({}, {"Host": "evil.example"}, {"X-Forwarded-Host": "evil.example"}):
            page = client.get(path, headers={**auth("ops", "s3cret"), **headers})
            assert page.status_code == 200, (path, headers)
            assert "Location" not in page.headers
            assert "evil.example" not in page.get_data(as_text=True)
        assert client.get(path).status_code == 401


def test_every_answer_forbids_framing_scripts_and_caching(settings: Settings) -> None:
    client = dashboard_app(settings).test_client()
    for page in (client.get("/dashboard/", headers=auth("ops", "s3cret")), client.get("/dashboard")):
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        csp = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "script-src" not in csp
    html = client.get("/dashboard/", headers=auth("ops", "s3cret")).get_data(as_text=True)
    assert "<script" not in html.lower()
    # The one inline style is allowed by its hash, and by nothing else.
    style = html.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in page.headers["Content-Security-Policy"]


def test_sender_text_is_escaped_and_retention_shown(settings: Settings, redis_conn: redis.Redis) -> None:
    from rq import Queue
    from rq.registry import FailedJobRegistry
    from rq.serializers import JSONSerializer

    queue = Queue(settings.queue_name, connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("builtins.len", "x", description='task <script>alert(1)</script>"')
    FailedJobRegistry(queue=queue).add(job, ttl=600)
    client = dashboard_app(replace(settings, quarantine_ttl=7 * 86400)).test_client()
    post(client, b"[1]")
    html = client.get("/dashboard/", headers=auth("ops", "s3cret")).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "expires at" in html and "kept for 7 days" in html
