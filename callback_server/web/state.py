"""The per-app objects (Redis client, key ring, stores), kept in ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask

from callback_server import stats
from callback_server.accept import AcceptPath
from callback_server.auth import KeyRing
from callback_server.config import Settings
from callback_server.connection import connect
from callback_server.deliveries import DeliveryQueue
from callback_server.quarantine import Quarantine

EXTENSION = "callback_server"


@dataclass(frozen=True)
class ReceiverState:
    """What the views need, built once per app."""

    settings: Settings
    connection: redis.Redis
    keyring: KeyRing
    accept: AcceptPath
    tally: stats.Tally

    @property
    def deliveries(self) -> DeliveryQueue:
        """The accept path's queue (the console reads the dedup through it)."""
        return self.accept.deliveries

    @property
    def quarantine(self) -> Quarantine:
        """The accept path's quarantine (the console lists and deletes through it)."""
        return self.accept.quarantine

    @classmethod
    def build(cls, settings: Settings, connection: redis.Redis | None = None) -> ReceiverState:
        """Wire the stores to one Redis client (no I/O happens here)."""
        connection = connection if connection is not None else connect(settings)
        return cls(
            settings=settings,
            connection=connection,
            keyring=KeyRing.from_secrets(settings.live_keys, settings.test_keys),
            accept=AcceptPath.from_settings(settings, connection),
            tally=stats.Tally(),
        )


def receiver_state(app: Flask) -> ReceiverState:
    """The app's :class:`ReceiverState`."""
    state: ReceiverState = app.extensions[EXTENSION]
    return state
