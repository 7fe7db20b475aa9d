"""One writer of timestamps, and the one parser reads what it writes (and what RQ and Scale write)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from callback_server.deliveries import rq_timestamp
from callback_server.times import parse_instant, stamp


def test_stamp_writes_utc_with_a_z_whatever_the_zone_given() -> None:
    moment = datetime(2026, 12, 4, 19, 30, 1, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert stamp(moment) == "2026-12-04T17:30:01.123Z"
    assert stamp(moment, timespec="seconds") == "2026-12-04T17:30:01Z"
    now = parse_instant(stamp())
    assert now is not None and abs((datetime.now(UTC) - now).total_seconds()) < 5


def test_the_parser_reads_every_form_the_receiver_meets() -> None:
    moment = datetime(2026, 12, 4, 17, 30, 1, 123000, tzinfo=UTC)
    for text in (stamp(moment), rq_timestamp(moment), moment.isoformat(), stamp(moment).encode()):
        assert parse_instant(text) == moment, text
    assert parse_instant(b"\xff") is None and parse_instant("yesterday") is None
