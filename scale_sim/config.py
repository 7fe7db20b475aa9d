"""Simulator settings, read once from the environment into a frozen, typed object.

A malformed value raises :class:`SimConfigError` naming the variable, so a typo in a fault list
or a port stops the simulator at boot rather than quietly simulating something else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from callback_server.config import Secret, read_float, read_int
from scale_sim import defaults
from scale_sim.exceptions import FaultSpecError, SimConfigError
from scale_sim.faults import FaultValues, parse_faults


def is_http_url(value: str) -> bool:
    """True for an absolute http(s) URL with a host, as Scale requires of callback URLs."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return read_float(env, name, default, error=SimConfigError)


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    return read_int(env, name, default, minimum=low, maximum=high, error=SimConfigError)


def _faults(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    specs = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    try:
        parse_faults(specs)
    except FaultSpecError as exc:
        raise SimConfigError(f"{name}: {exc}") from None
    return specs


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not is_http_url(raw):
        raise SimConfigError(f"{name} must be an absolute http:// or https:// URL, got {raw!r}")
    return raw


def _timeout(env: Mapping[str, str], name: str) -> float:
    value = _float(env, name, defaults.CALLBACK_TIMEOUT)
    if value == 0:
        raise SimConfigError(f"{name} must be more than 0 seconds")
    return value


@dataclass(frozen=True)
class SimSettings:
    """Everything the simulator reads from the environment; build one directly in tests."""

    port: int = defaults.PORT
    host: str = defaults.HOST
    callback_auth_key: Secret = Secret("")
    test_callback_auth_key: Secret = Secret("")
    """The key test tasks' callbacks carry (Scale's test-mode key); empty: they carry callback_auth_key."""
    completion_delay: float = defaults.COMPLETION_DELAY
    time_scale: float = defaults.TIME_SCALE
    faults: tuple[str, ...] = ()
    rate_limit: float = defaults.RATE_LIMIT
    seed: int = defaults.SEED
    default_callback_url: str | None = None
    data_path: str = defaults.DATA_PATH
    callback_timeout: float = defaults.CALLBACK_TIMEOUT

    def __post_init__(self) -> None:
        self.fault_values()  # a bad fault list fails here too, not at the first completion

    def fault_values(self) -> FaultValues:
        """The parsed SCALE_SIM_FAULTS, applied to every task."""
        try:
            return parse_faults(self.faults)
        except FaultSpecError as exc:
            raise SimConfigError(f"SCALE_SIM_FAULTS: {exc}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SimSettings:
        """Read and check every variable; raise :class:`SimConfigError` naming the first bad one."""
        env = os.environ if env is None else env
        return cls(
            port=_int(env, "PORT", defaults.PORT, low=0, high=65535),
            host=env.get("SCALE_SIM_HOST", "").strip() or defaults.HOST,
            callback_auth_key=Secret(env.get("SCALE_SIM_CALLBACK_AUTH_KEY", "").strip()),
            test_callback_auth_key=Secret(env.get("SCALE_SIM_TEST_CALLBACK_AUTH_KEY", "").strip()),
            completion_delay=_float(env, "SCALE_SIM_COMPLETION_DELAY", defaults.COMPLETION_DELAY),
            time_scale=_float(env, "SCALE_SIM_TIME_SCALE", defaults.TIME_SCALE),
            faults=_faults(env, "SCALE_SIM_FAULTS"),
            rate_limit=_float(env, "SCALE_SIM_RATE_LIMIT", defaults.RATE_LIMIT),
            seed=_int(env, "SCALE_SIM_SEED", defaults.SEED, low=-(2**63), high=2**63 - 1),
            default_callback_url=_url(env, "SCALE_SIM_DEFAULT_CALLBACK_URL"),
            data_path=env.get("SCALE_SIM_DATA", "").strip() or defaults.DATA_PATH,
            callback_timeout=_timeout(env, "SCALE_SIM_CALLBACK_TIMEOUT"),
        )
