"""Checking the ``scale-callback-auth`` header: constant time, on bytes, with rotation.

Scale signs nothing: the header is a static shared secret, so this comparison is all the
authenticity there is. Every configured key is compared, whether or not an earlier one
matched, so the time taken says nothing about which key (or how much of it) was right.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from callback_server.config import Secret
from callback_server.exceptions import CallbackAuthError

HEADER = "scale-callback-auth"
"""The header Scale sets on every callback."""

LIVE = "live"
TEST = "test"


@dataclass(frozen=True)
class KeyRing:
    """The accepted keys, by mode; several per mode while a key is being rotated."""

    live: tuple[bytes, ...]
    test: tuple[bytes, ...] = ()

    @classmethod
    def from_secrets(cls, live: tuple[Secret, ...], test: tuple[Secret, ...] = ()) -> KeyRing:
        """Build from configured secrets (already checked to be ASCII by the config)."""
        return cls(
            live=tuple(s.reveal().encode("ascii") for s in live),
            test=tuple(s.reveal().encode("ascii") for s in test),
        )

    def __repr__(self) -> str:
        return f"KeyRing(live={len(self.live)} keys, test={len(self.test)} keys)"

    def authenticate(self, header: str | None) -> str:
        """The mode (``live`` or ``test``) whose key the header matches; else :class:`CallbackAuthError`."""
        if not header:
            raise CallbackAuthError("missing scale-callback-auth header")
        # WSGI hands headers over as latin-1 text; anything outside ASCII cannot be a key.
        if not header.isascii():
            raise CallbackAuthError("scale-callback-auth header is not ASCII")
        given = header.encode("ascii")
        live = _matches(given, self.live)
        test = _matches(given, self.test)
        if live:
            return LIVE
        if test:
            return TEST
        raise CallbackAuthError("scale-callback-auth header does not match a configured key")


def _matches(given: bytes, keys: tuple[bytes, ...]) -> bool:
    matched = False
    for key in keys:
        # `|=` rather than `or`: no short circuit, every key costs the same.
        matched |= hmac.compare_digest(given, key)
    return matched
