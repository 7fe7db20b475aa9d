"""Settings from the environment: defaults, fail-closed errors that name the variable, secrets hidden."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callback_server.auth import KeyRing
from callback_server.config import Secret, ServerSettings, Settings
from callback_server.exceptions import CallbackAuthError, ConfigError
from callback_server.web import create_app

BASE = {"REDIS_URL": "redis://localhost:6379/0", "SCALE_CALLBACK_AUTH_KEY": "live-key-0123456789abcdef"}
NEW, OLD, TEST = "new-key-0123456789ab", "old-key-0123456789ab", "test-key-0123456789ab"


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.max_content_length == 10 * 1024 * 1024
    assert settings.dedup_ttl == 2 * 24 * 3600
    assert settings.handler_retry_intervals == (30, 300, 1800, 7200, 21600)
    assert settings.callback_handlers == ("workers.handlers",)
    assert settings.dashboard_password is None
    assert settings.scale_api_url == "https://api.scale.com/v1"
    assert settings.quarantine_ttl == 30 * 24 * 3600


def test_keys_rotate_and_never_print() -> None:
    settings = Settings.from_env(
        {**BASE, "SCALE_CALLBACK_AUTH_KEY": f" {NEW} , {OLD} ", "SCALE_TEST_CALLBACK_AUTH_KEY": TEST}
    )
    assert [k.reveal() for k in settings.live_keys] == [NEW, OLD]
    assert NEW not in repr(settings) and OLD not in str(settings)
    assert repr(Secret("x")) == "'**********'"
    ring = KeyRing.from_secrets(settings.live_keys, settings.test_keys)
    assert NEW not in repr(ring)
    assert ring.authenticate(OLD) == "live"
    assert ring.authenticate(TEST) == "test"
    with pytest.raises(CallbackAuthError):
        ring.authenticate(NEW + " ")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "redis://x"}, "SCALE_CALLBACK_AUTH_KEY is not set"),
        ({**BASE, "SCALE_CALLBACK_AUTH_KEY": " , "}, "SCALE_CALLBACK_AUTH_KEY is not set"),
        ({**BASE, "SCALE_CALLBACK_AUTH_KEY": "clé"}, "SCALE_CALLBACK_AUTH_KEY holds a key with non-ASCII"),
        ({"SCALE_CALLBACK_AUTH_KEY": NEW}, "REDIS_URL is not set"),
        ({**BASE, "QUARANTINE_TTL": "a month"}, "QUARANTINE_TTL must be a whole number"),
        ({**BASE, "QUARANTINE_TTL": "60"}, "QUARANTINE_TTL must be at least 3600"),
        ({**BASE, "REDIS_URL": "http://x"}, "REDIS_URL must start with"),
        ({**BASE, "MAX_CONTENT_LENGTH": "ten"}, "MAX_CONTENT_LENGTH must be a whole number"),
        ({**BASE, "MAX_CONTENT_LENGTH": "10"}, "MAX_CONTENT_LENGTH must be at least 1024"),
        ({**BASE, "DEDUP_TTL": "60"}, "DEDUP_TTL must be at least 86400"),
        ({**BASE, "REDIS_TIMEOUT": "nan"}, "REDIS_TIMEOUT must be a finite number, at least"),
        ({**BASE, "HANDLER_RETRY_INTERVALS": "60,soon"}, "HANDLER_RETRY_INTERVALS must be comma-separated"),
        ({**BASE, "HANDLER_RETRY_INTERVALS": "60,-1"}, "HANDLER_RETRY_INTERVALS must not hold negative"),
        ({**BASE, "RECONCILE_WINDOW": "3600"}, "RECONCILE_WINDOW is no longer read: it was renamed RECONCILE_LOOKBACK"),
        ({**BASE, "WORKER_HEARTBEAT": "0"}, "WORKER_HEARTBEAT must be at least"),
        ({**BASE, "REDIS_POOL_SIZE": "0"}, "REDIS_POOL_SIZE must be between 1 and 1000, got 0"),
        ({**BASE, "REDIS_POOL_SIZE": "many"}, "REDIS_POOL_SIZE must be a whole number"),
        ({**BASE, "EFFECTS_TTL": "86400"}, "EFFECTS_TTL (86400) must be at least the failed-job lifetime"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert message in str(raised.value)


def test_a_bad_redis_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, "REDIS_URL": "hunter2@redis.example.com:6379"})
    assert "hunter2" not in str(raised.value)


def test_server_settings() -> None:
    assert ServerSettings.from_env({}, cpu_count=2) == ServerSettings(port=5000, web_concurrency=5)
    assert ServerSettings.from_env({"PORT": "8080", "WEB_CONCURRENCY": "3"}) == ServerSettings(8080, 3)
    for env, message in (
        ({"PORT": "http"}, "PORT must be a whole number"),
        ({"PORT": "70000"}, "PORT must be at most 65535"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY must be at least 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            ServerSettings.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCALE_CALLBACK_AUTH_KEY", "short-key-15chr"),
        ("SCALE_CALLBACK_AUTH_KEY", f"{NEW},short"),  # one short key among the rotation is enough
        ("SCALE_TEST_CALLBACK_AUTH_KEY", "tkey"),
        ("DASHBOARD_PASSWORD", "dev"),
    ],
)
def test_short_secrets_are_refused_at_start_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable} holds a ")
    assert "at least 16" in message
    for part in value.split(","):
        assert part not in message  # the secret itself is never echoed


def test_sixteen_characters_are_enough() -> None:
    settings = Settings.from_env({**BASE, "SCALE_CALLBACK_AUTH_KEY": "k" * 16, "DASHBOARD_PASSWORD": "p" * 16})
    assert settings.live_keys[0].reveal() == "k" * 16
    assert settings.dashboard_password is not None


def test_the_local_dev_stack_may_use_short_secrets() -> None:
    env = {**BASE, "SCALE_CALLBACK_AUTH_KEY": "dev", "DASHBOARD_PASSWORD": "dev", "CALLBACK_SERVER_DEV": "1"}
    settings = Settings.from_env(env)
    assert settings.live_keys[0].reveal() == "dev"
    with pytest.raises(ConfigError, match="DASHBOARD_PASSWORD"):
        Settings.from_env({**env, "CALLBACK_SERVER_DEV": "yes"})  # only the exact flag the dev command sets


def test_the_local_dev_stack_answers_only_localhost_names(settings: Settings) -> None:
    """`make run`'s key and password are short and printed: no page may reach it by DNS rebinding."""
    dev = create_app(replace(settings, local_dev=True))
    production = create_app(settings)
    try:
        for host, status in (("evil.example", 400), ("127.0.0.1.nip.io:5000", 400), ("localhost:5000", 200)):
            assert dev.test_client().get("/healthz", headers={"Host": host}).status_code == status, host
        assert production.test_client().get("/healthz", headers={"Host": "my-app.herokuapp.com"}).status_code == 200
    finally:
        dev.extensions["callback_server"].tally.stop()
        production.extensions["callback_server"].tally.stop()
    assert Settings.from_env({**BASE, "CALLBACK_SERVER_DEV": "1"}).local_dev and not Settings.from_env(BASE).local_dev
