"""Settings from the environment: defaults, fail-closed errors that name the variable, secrets hidden."""

from __future__ import annotations

import pytest

from callback_server.auth import KeyRing
from callback_server.config import Secret, ServerSettings, Settings
from callback_server.exceptions import CallbackAuthError, ConfigError

BASE = {"REDIS_URL": "redis://localhost:6379/0", "SCALE_CALLBACK_AUTH_KEY": "k1"}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.max_content_length == 10 * 1024 * 1024
    assert settings.dedup_ttl == 7 * 24 * 3600
    assert settings.retry_intervals == (60, 300, 1800, 7200, 21600)
    assert settings.callback_handlers == ("workers.handlers",)
    assert settings.dashboard_password is None
    assert settings.scale_api_url == "https://api.scale.com/v1"


def test_keys_rotate_and_never_print() -> None:
    settings = Settings.from_env({**BASE, "SCALE_CALLBACK_AUTH_KEY": " new-key , old-key ",
                                  "SCALE_TEST_CALLBACK_AUTH_KEY": "t"})
    assert [k.reveal() for k in settings.live_keys] == ["new-key", "old-key"]
    assert "new-key" not in repr(settings) and "old-key" not in str(settings)
    assert repr(Secret("x")) == "'**********'"
    ring = KeyRing.from_secrets(settings.live_keys, settings.test_keys)
    assert "new-key" not in repr(ring)
    assert ring.mode_of("old-key") == "live"
    assert ring.mode_of("t") == "test"
    with pytest.raises(CallbackAuthError):
        ring.mode_of("new-key ")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "redis://x"}, "SCALE_CALLBACK_AUTH_KEY is not set"),
        ({**BASE, "SCALE_CALLBACK_AUTH_KEY": " , "}, "SCALE_CALLBACK_AUTH_KEY is not set"),
        ({**BASE, "SCALE_CALLBACK_AUTH_KEY": "clé"}, "SCALE_CALLBACK_AUTH_KEY holds a key with non-ASCII"),
        ({"SCALE_CALLBACK_AUTH_KEY": "k"}, "REDIS_URL is not set"),
        ({**BASE, "REDIS_URL": "http://x"}, "REDIS_URL must start with"),
        ({**BASE, "MAX_CONTENT_LENGTH": "ten"}, "MAX_CONTENT_LENGTH must be a whole number"),
        ({**BASE, "MAX_CONTENT_LENGTH": "10"}, "MAX_CONTENT_LENGTH must be at least 1024"),
        ({**BASE, "DEDUP_TTL": "60"}, "DEDUP_TTL must be at least 86400"),
        ({**BASE, "REDIS_TIMEOUT": "nan"}, "REDIS_TIMEOUT must be at least"),
        ({**BASE, "HANDLER_RETRY_INTERVALS": "60,soon"}, "HANDLER_RETRY_INTERVALS must be comma-separated"),
        ({**BASE, "HANDLER_RETRY_INTERVALS": "60,-1"}, "HANDLER_RETRY_INTERVALS must not hold negative"),
        ({**BASE, "RECONCILE_WINDOW": "999999999"}, "RECONCILE_WINDOW (999999999) must not exceed DEDUP_TTL"),
        ({**BASE, "WORKER_HEARTBEAT": "0"}, "WORKER_HEARTBEAT must be at least"),
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
