"""Time, as the receiver reads and writes it: one parser, one writer.

Every timestamp the receiver reads (Scale's, RQ's, its own stored ones) goes through
:func:`parse_instant`; every one it writes into Redis or a log comes from :func:`stamp`, UTC
with a ``Z``. RQ's own job fields are written in RQ's format by
:func:`callback_server.deliveries.rq_timestamp`, which is RQ's business, not ours.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_SLOPPY_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?=T|\s|$)")
_AFTER_DATE = ("T", " ", "")


def _pad_date(match: re.Match[str]) -> str:
    year, month, day = match.groups()
    return f"{year}-{int(month):02d}-{int(day):02d}"


def _is_padded_date(value: str) -> bool:
    """Whether a timestamp already starts YYYY-MM-DD (most do): the padding regex is its cost otherwise.

    ASCII only, since \\d also matches other scripts' digits, which the padding turns into ASCII.
    """
    return len(value) >= 10 and value.isascii() and value[4] == "-" and value[7] == "-" and value[10:11] in _AFTER_DATE


def parse_instant(value: object) -> datetime | None:
    """A timestamp as an aware UTC datetime, or None when absent, malformed or unrepresentable.

    Lenient on purpose: Scale's own docs print ``2016-9-03T07:38:32.368Z``; a timestamp that
    cannot be read is kept as sent in ``raw`` rather than holding back a result. A time without
    an offset is taken as UTC (RQ writes them so). Bytes (a Redis reply) are read as UTF-8.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    if not _is_padded_date(value):
        value = _SLOPPY_DATE.sub(_pad_date, value, count=1)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 has no UTC instant
        return None


def stamp(moment: datetime | None = None, timespec: str = "milliseconds") -> str:
    """A time (now by default) as the receiver writes it: ISO 8601 in UTC, ending in ``Z``."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
