"""Settings from the environment: defaults, every variable, and a named error for each bad one."""

from __future__ import annotations

import pytest

from scale_sim import defaults
from scale_sim.config import Secret, SimSettings
from scale_sim.exceptions import SimConfigError


def test_defaults_from_an_empty_environment() -> None:
    settings = SimSettings.from_env({})
    assert settings.port == 8090
    assert settings.host == "127.0.0.1"
    assert settings.completion_delay == defaults.COMPLETION_DELAY
    assert settings.time_scale == 1.0
    assert settings.faults == ()
    assert settings.rate_limit == 0.0
    assert settings.seed == 0
    assert settings.default_callback_url is None
    assert settings.data_path == "var/scale_sim.sqlite3"
    assert not settings.callback_auth_key


def test_every_variable_is_read() -> None:
    settings = SimSettings.from_env(
        {
            "PORT": "9001",
            "SCALE_SIM_HOST": "0.0.0.0",
            "SCALE_SIM_CALLBACK_AUTH_KEY": "cb-key",
            "SCALE_SIM_COMPLETION_DELAY": "0",
            "SCALE_SIM_TIME_SCALE": "0.001",
            "SCALE_SIM_FAULTS": "duplicate=3, wrong_key,delay=1.5",
            "SCALE_SIM_RATE_LIMIT": "5",
            "SCALE_SIM_SEED": "42",
            "SCALE_SIM_DEFAULT_CALLBACK_URL": "http://127.0.0.1:5000/callback",
            "SCALE_SIM_DATA": "/tmp/x.sqlite3",
            "SCALE_SIM_CALLBACK_TIMEOUT": "3",
        }
    )
    assert settings.port == 9001
    assert settings.host == "0.0.0.0"
    assert settings.callback_auth_key.reveal() == "cb-key"
    assert settings.completion_delay == 0.0
    assert settings.time_scale == 0.001
    assert settings.faults == ("duplicate=3", "wrong_key", "delay=1.5")
    assert settings.fault_values() == {"duplicate": 3, "wrong_key": True, "delay": 1.5}
    assert settings.rate_limit == 5.0
    assert settings.seed == 42
    assert settings.default_callback_url == "http://127.0.0.1:5000/callback"
    assert settings.data_path == "/tmp/x.sqlite3"
    assert settings.callback_timeout == 3.0


def test_the_callback_key_never_prints() -> None:
    settings = SimSettings.from_env({"SCALE_SIM_CALLBACK_AUTH_KEY": "super-secret"})
    assert "super-secret" not in repr(settings)
    assert "super-secret" not in str(settings.callback_auth_key)
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("SCALE_SIM_COMPLETION_DELAY", "-1"),
        ("SCALE_SIM_COMPLETION_DELAY", "soon"),
        ("SCALE_SIM_TIME_SCALE", "nan"),
        ("SCALE_SIM_TIME_SCALE", "inf"),
        ("SCALE_SIM_FAULTS", "explode"),
        ("SCALE_SIM_FAULTS", "duplicate,delay"),
        ("SCALE_SIM_FAULTS", "drop=1"),
        ("SCALE_SIM_RATE_LIMIT", "-2"),
        ("SCALE_SIM_SEED", "1.5"),
        ("SCALE_SIM_DEFAULT_CALLBACK_URL", "ftp://example.com/cb"),
        ("SCALE_SIM_DEFAULT_CALLBACK_URL", "example.com/cb"),
        ("SCALE_SIM_CALLBACK_TIMEOUT", "0"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SimConfigError, match=name):
        SimSettings.from_env({name: value})


def test_settings_built_in_code_check_their_faults_too() -> None:
    with pytest.raises(SimConfigError, match="SCALE_SIM_FAULTS"):
        SimSettings(faults=("bogus",))
