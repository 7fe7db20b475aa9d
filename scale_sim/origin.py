"""Refuse cross-origin form posts: the simulator's page has no login, so a foreign page must not drive it.

A browser names the page a POST comes from in `Origin` (or at least `Referer`); when either is
present it must be this simulator's own origin. Scripts and the official client send neither,
so the JSON API stays usable from anywhere that can reach the port.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing and so need no origin check."""


class CrossOriginError(Exception):
    """A state-changing request whose Origin (or Referer) names another site; answered 403."""


def check_same_origin(method: str, origin: str | None, referer: str | None, *, scheme: str, host: str) -> None:
    """Raise CrossOriginError when a non-safe request says it comes from another origin than scheme://host."""
    if method.upper() in SAFE_METHODS:
        return
    claimed = origin if origin is not None else referer
    if claimed is None:
        return  # not sent by a browser page: curl, the official client, tests
    if claimed == "null":
        raise CrossOriginError("Cross-origin form posts are refused: the request came from an opaque origin")
    parts = urlsplit(claimed)
    if parts.scheme.lower() != scheme.lower() or parts.netloc.lower() != host.lower():
        source = f"{parts.scheme}://{parts.netloc}" if parts.netloc else repr(claimed[:100])
        raise CrossOriginError(
            f"Cross-origin form posts are refused: the request came from {source}, not from {scheme}://{host}"
        )
