"""The receiver's settings as the tests use them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from callback_server.config import Settings
from tests.support.keys import LIVE_KEY, OLD_LIVE_KEY, TEST_KEY


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings as the tests use them; keyword arguments override single fields."""
    env = {
        "REDIS_URL": redis_url,
        "SCALE_CALLBACK_AUTH_KEY": f"{LIVE_KEY},{OLD_LIVE_KEY}",
        "SCALE_TEST_CALLBACK_AUTH_KEY": TEST_KEY,
        "REDIS_TIMEOUT": "0.5",
    }
    settings = Settings.from_env(env)
    if overrides:
        settings = replace(settings, **overrides)
    return settings
