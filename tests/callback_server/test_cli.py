"""The command line: quarantine list/show/replay/delete, with real Redis."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner
from flask.testing import FlaskClient

from callback_server.cli import cli
from callback_server.config import Settings
from callback_server.quarantine import Quarantine
from tests.support.fixtures import load_fixture, poison_body
from tests.support.http import post
from tests.support.jobs import queued_jobs
from tests.support.keys import LIVE_KEY


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    return CliRunner()


def quarantined_id(conn: redis.Redis) -> str:
    (item,) = Quarantine(conn).recent()
    return item.quarantine_id


def test_list_and_show(runner: CliRunner, client: FlaskClient, redis_conn: redis.Redis) -> None:
    post(client, b'{"task_id": truncated')
    qid = quarantined_id(redis_conn)
    listed = runner.invoke(cli, ["quarantine", "list"])
    assert listed.exit_code == 0
    assert qid in listed.output and "body is not valid JSON" in listed.output
    assert "truncated" not in listed.output  # no bodies in the list
    shown = runner.invoke(cli, ["quarantine", "show", qid])
    assert shown.exit_code == 0
    assert '{"task_id": truncated' in shown.output
    assert LIVE_KEY not in shown.output


def test_replay_after_a_fix_queues_once_and_clears(
    runner: CliRunner, client: FlaskClient, redis_conn: redis.Redis
) -> None:
    body = load_fixture("phonecall")
    body["response"]["outcome"] = "voicemail"  # not an outcome we accept today
    post(client, body)
    qid = quarantined_id(redis_conn)
    still_bad = runner.invoke(cli, ["quarantine", "replay", qid])
    assert still_bad.exit_code == 1
    assert "still invalid" in still_bad.output and "outcome" in still_bad.output
    assert queued_jobs(redis_conn) == []
    # An operator fixes the stored body (as a schema change would), then replays it.
    key = f"scb:quarantine:{qid}"
    fixed = json.loads(redis_conn.hget(key, "body"))
    fixed["response"]["outcome"] = "success"
    redis_conn.hset(key, "body", json.dumps(fixed))
    replayed = runner.invoke(cli, ["quarantine", "replay", qid])
    assert replayed.exit_code == 0, replayed.output
    assert f"{qid}  queued" in replayed.output
    (job,) = queued_jobs(redis_conn)
    assert job.args[0]["source"] == "replay"
    assert Quarantine(redis_conn).count() == 0
    # Scale's own delivery of the same content afterwards is a duplicate.
    assert post(client, fixed).get_json() == {"status": "duplicate"}


def test_replay_all_keeps_a_body_that_breaks_the_parser_and_goes_on(
    runner: CliRunner, client: FlaskClient, redis_conn: redis.Redis
) -> None:
    assert post(client, poison_body()).get_json() == {"status": "quarantined"}
    poison_id = quarantined_id(redis_conn)
    fine = load_fixture("phonecall")
    fine["response"]["outcome"] = "voicemail"
    post(client, fine)
    fine_id = next(i.decode() for i in redis_conn.zrange("scb:quarantine", 0, -1) if i.decode() != poison_id)
    fine["response"]["outcome"] = "success"
    redis_conn.hset(f"scb:quarantine:{fine_id}", "body", json.dumps(fine))
    replayed = runner.invoke(cli, ["quarantine", "replay", "--all"])
    assert replayed.exit_code == 1 and isinstance(replayed.exception, SystemExit)  # one kept: exit 1, no crash
    assert "Traceback" not in replayed.output
    assert f"{poison_id}  kept: body passed validation but could not be queued: RecursionError" in replayed.output
    assert f"{fine_id}  queued" in replayed.output
    kept = Quarantine(redis_conn).get(poison_id)
    assert kept.reason.startswith("body passed validation but could not be queued: RecursionError")


def test_replay_all_and_delete(runner: CliRunner, client: FlaskClient, redis_conn: redis.Redis) -> None:
    post(client, b"[1]")
    post(client, b"{")
    assert Quarantine(redis_conn).count() == 2
    replayed = runner.invoke(cli, ["quarantine", "replay", "--all"])
    assert replayed.exit_code == 1
    assert replayed.output.count("still invalid") == 2
    for qid in Quarantine(redis_conn).ids():
        assert runner.invoke(cli, ["quarantine", "delete", qid]).exit_code == 0
    assert Quarantine(redis_conn).count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["quarantine", "show", "nope"], "no quarantined delivery with id 'nope'"),
        (["quarantine", "delete", "nope"], "no quarantined delivery with id 'nope'"),
        (["quarantine", "replay"], "name quarantine ids, or give --all"),
        (["quarantine", "list", "--limit", "0"], "0 is not in the range"),
    ],
)
def test_bad_commands_say_what_is_wrong(
    runner: CliRunner, redis_conn: redis.Redis, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code != 0
    assert message in result.output


def test_missing_config_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    result = CliRunner().invoke(cli, ["quarantine", "list"])
    assert result.exit_code == 1
    assert "REDIS_URL is not set" in result.output


OSC_TITLE = "\x1b]0;pwned\x07"
"""An OSC sequence that retitles a terminal: it must reach the screen as text, never as an escape."""


def test_show_escapes_control_characters_of_the_body(
    runner: CliRunner, client: FlaskClient, redis_conn: redis.Redis
) -> None:
    # Raw control characters make the JSON invalid, so the body is quarantined as sent.
    post(client, f'{{"task_id": "{OSC_TITLE}", "note": "a\rb\u202ec\x9b"}}'.encode())
    qid = quarantined_id(redis_conn)
    shown = runner.invoke(cli, ["quarantine", "show", qid])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\x07" not in shown.output and "\r" not in shown.output
    assert "\u202e" not in shown.output and "\x9b" not in shown.output
    assert "\\x1b]0;pwned\\x07" in shown.output
    assert "a\\rb\\u202ec\\x9b" in shown.output
    listed = runner.invoke(cli, ["quarantine", "list"])
    assert "\x1b" not in listed.output


def test_list_and_show_say_when_an_entry_expires(
    runner: CliRunner, client: FlaskClient, redis_conn: redis.Redis
) -> None:
    post(client, b"[1]")
    qid = quarantined_id(redis_conn)
    listed = runner.invoke(cli, ["quarantine", "list"])
    assert "expires in 29d23h" in listed.output or "expires in 30d00h" in listed.output
    shown = runner.invoke(cli, ["quarantine", "show", qid])
    assert '"expires_in": 259' in shown.output and '"expires_at": "' in shown.output
    assert "expires in " in shown.output and "(at 20" in shown.output


def test_quarantine_ttl_comes_from_the_environment(
    runner: CliRunner, client: FlaskClient, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARANTINE_TTL", "7200")
    post(client, b"[1]")  # stored by the app with the default retention
    qid = quarantined_id(redis_conn)
    redis_conn.expire(f"scb:quarantine:{qid}", 5400)
    listed = runner.invoke(cli, ["quarantine", "list"])
    assert "expires in 1h" in listed.output  # what Redis holds, not a recomputation


def test_failed_list_escapes_sender_controlled_fields(
    runner: CliRunner, settings: Settings, redis_conn: redis.Redis
) -> None:
    from rq import Queue
    from rq.registry import FailedJobRegistry
    from rq.serializers import JSONSerializer

    queue = Queue(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("builtins.len", "x", description=f"categorization task {OSC_TITLE}\x1b[2J")
    FailedJobRegistry(queue=queue).add(job, ttl=600)
    listed = runner.invoke(cli, ["failed", "list"])
    assert listed.exit_code == 0, listed.output
    assert job.id in listed.output
    assert "\x1b" not in listed.output and "\x07" not in listed.output
    assert "task \\x1b]0;pwned\\x07\\x1b[2J" in listed.output


def test_reconcile_runs_escape_what_scale_answered(runner: CliRunner, redis_conn: redis.Redis) -> None:
    from callback_server.reconcile import RunLog, RunSummary

    RunLog(redis_conn).add(
        RunSummary(
            run_id="r1",
            started_at="2026-11-29T00:00:00+00:00",
            window_start="a",
            window_end="b",
            errors=[f"task {OSC_TITLE}: HTTP 500"],
            notes=["note \r\x1b[2J"],
            queued_task_ids=[f"t{OSC_TITLE}"],
        )
    )
    shown = runner.invoke(cli, ["reconcile", "runs"])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\r" not in shown.output
    assert "task \\x1b]0;pwned\\x07: HTTP 500" in shown.output and "note \\r\\x1b[2J" in shown.output


@pytest.mark.parametrize(
    "args", [["waiting", "list"], ["failed", "list"], ["quarantine", "list"], ["unhandled", "list"]]
)
def test_redis_away_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1, done.output
    assert "Error: redis: ConnectionError" in done.output and "Traceback" not in done.output
