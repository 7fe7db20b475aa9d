"""KeyRing: which mode a ``scale-callback-auth`` header's key belongs to, in constant time, and why not."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import pytest

from callback_server import auth
from callback_server.auth import HEADER, LIVE, TEST, KeyRing
from callback_server.config import Secret
from callback_server.exceptions import CallbackAuthError, HTTPError

NEW, OLD, SPARE = "new-live-key-0123456789", "old-live-key-0123456789", "third-live-key-012345"
TEST_ONE, TEST_TWO = "test-key-one-0123456789", "test-key-two-0123456789"


def ring(live: tuple[str, ...] = (NEW, OLD), test: tuple[str, ...] = (TEST_ONE,)) -> KeyRing:
    return KeyRing.from_secrets(tuple(Secret(k) for k in live), tuple(Secret(k) for k in test))


def refusal(keys: KeyRing, header: str | None) -> CallbackAuthError:
    with pytest.raises(CallbackAuthError) as refused:
        keys.authenticate(header)
    return refused.value


def test_the_header_is_the_one_scale_sets() -> None:
    assert HEADER == "scale-callback-auth"
    assert (LIVE, TEST) == ("live", "test")


def test_from_secrets_keeps_every_key_in_order_as_bytes() -> None:
    keys = ring(live=(NEW, OLD, SPARE), test=(TEST_ONE, TEST_TWO))
    assert keys.live == (NEW.encode(), OLD.encode(), SPARE.encode())
    assert keys.test == (TEST_ONE.encode(), TEST_TWO.encode())
    assert KeyRing.from_secrets((Secret(NEW),)).test == ()


@pytest.mark.parametrize("key", [NEW, OLD, SPARE])
def test_during_a_rotation_each_live_key_is_live(key: str) -> None:
    assert ring(live=(NEW, OLD, SPARE)).authenticate(key) == LIVE


@pytest.mark.parametrize("key", [TEST_ONE, TEST_TWO])
def test_each_test_key_is_test(key: str) -> None:
    assert ring(test=(TEST_ONE, TEST_TWO)).authenticate(key) == TEST


def test_a_retired_key_no_longer_passes() -> None:
    before, after = ring(live=(NEW, OLD)), ring(live=(NEW,))
    assert before.authenticate(OLD) == LIVE
    assert refusal(after, OLD).message == "scale-callback-auth header does not match a configured key"
    assert after.authenticate(NEW) == LIVE


def test_a_key_configured_as_both_live_and_test_is_live() -> None:
    """Config refuses that (doctor says so too); the ring, given it anyway, never calls live traffic a test."""
    assert ring(live=(NEW,), test=(NEW,)).authenticate(NEW) == LIVE


def test_without_test_keys_a_test_key_is_refused() -> None:
    assert refusal(ring(test=()), TEST_ONE).message == "scale-callback-auth header does not match a configured key"


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_or_empty_header_says_so(header: str | None) -> None:
    error = refusal(ring(), header)
    assert error.message == str(error) == "missing scale-callback-auth header"


@pytest.mark.parametrize("header", ["clé-0123456789", NEW + "\u00e9", "\u2603", "n\u0435w-live-key-0123456789"])
def test_a_non_ascii_header_says_so(header: str) -> None:
    """WSGI hands headers over as latin-1 text: such a header cannot be a key (the last has a Cyrillic e)."""
    assert refusal(ring(), header).message == "scale-callback-auth header is not ASCII"


@pytest.mark.parametrize(
    "header",
    [NEW[:-1], NEW + "x", NEW + " ", " " + NEW, NEW.upper(), NEW[:1], f"{NEW},{OLD}", "Bearer " + NEW, "x" * 4096],
)
def test_anything_but_a_whole_key_does_not_match(header: str) -> None:
    assert refusal(ring(), header).message == "scale-callback-auth header does not match a configured key"


def test_a_refusal_is_answered_401_unauthorized_and_never_names_a_key() -> None:
    error = refusal(ring(), "wrong-key")
    assert isinstance(error, HTTPError)
    assert (error.status_code, error.error) == (401, "unauthorized")
    assert error.details is None
    for key in (NEW, OLD, TEST_ONE, "wrong-key"):
        assert key not in str(error)


def test_repr_and_str_show_how_many_keys_never_which() -> None:
    keys = ring(live=(NEW, OLD, SPARE), test=(TEST_ONE,))
    assert repr(keys) == str(keys) == "KeyRing(live=3 keys, test=1 keys)"
    shown = repr(keys) + str(keys) + f"{keys}" + repr([keys])
    for key in (NEW, OLD, SPARE, TEST_ONE):
        assert key not in shown and key[:8] not in shown


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every ``hmac.compare_digest`` the ring makes, in order (the real comparison still decides)."""
    made: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def compare(given: bytes, key: bytes) -> bool:
        made.append((given, key))
        return real(given, key)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare)
    return made


@pytest.mark.parametrize("header", [NEW, OLD, SPARE, TEST_ONE, TEST_TWO, "wrong-key"])
def test_every_key_is_compared_in_constant_time_whichever_matches(
    comparisons: list[tuple[bytes, bytes]], header: str
) -> None:
    """No short circuit: the time taken says nothing about which key (or how much of it) was right."""
    keys = ring(live=(NEW, OLD, SPARE), test=(TEST_ONE, TEST_TWO))
    try:
        keys.authenticate(header)
    except CallbackAuthError:
        assert header == "wrong-key"
    given = header.encode()
    assert comparisons == [(given, k) for k in (*keys.live, *keys.test)]


def test_no_comparison_is_made_for_a_header_that_cannot_be_a_key(comparisons: list[tuple[bytes, bytes]]) -> None:
    for header in (None, "", "clé"):
        refusal(ring(), header)
    assert comparisons == []
