"""The real gunicorn process with the shipped gunicorn.conf.py, and real worker processes."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from callback_server.devserver import web_command
from callback_server.embedded import RedisProcess, free_port
from callback_server.schemas import REFERENCE_TYPES
from tests.support.fixtures import load_fixture
from tests.support.handlers import effects
from tests.support.keys import LIVE_KEY
from tests.support.processes import ROOT, child_env, gunicorn, process, stack_env, wait_for, worker_args

pytestmark = pytest.mark.slow


@pytest.fixture
def server_env(redis_conn: redis.Redis, redis_server: RedisProcess) -> dict[str, str]:
    return stack_env(redis_server.url, REDIS_TIMEOUT="0.5")


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with gunicorn(server_env, free_port(), tmp_path / "gunicorn.log") as base:
        yield base


def post(base: str, body: object, key: str = LIVE_KEY, **kwargs: object) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"scale-callback-auth": key, "Content-Type": "application/json"}
    return requests.post(f"{base}/callback", data=data, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_gunicorn_serves_every_answer(server: str, redis_conn: redis.Redis) -> None:
    body = load_fixture("annotation")
    assert post(server, body).json() == {"status": "queued"}
    assert post(server, body).json() == {"status": "duplicate"}
    assert post(server, b"{oops").json() == {"status": "quarantined"}
    assert post(server, body, key="wrong").status_code == 401
    assert requests.get(f"{server}/readyz", timeout=5).json() == {"status": "ready"}


def test_chunked_body_over_the_limit_gets_413(server: str, redis_conn: redis.Redis) -> None:
    chunk = b" " * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield chunk

    response = requests.post(
        f"{server}/callback",
        data=chunks(),
        headers={"scale-callback-auth": LIVE_KEY, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert redis_conn.dbsize() == 0


def test_chunked_body_under_the_limit_is_accepted(server: str, redis_conn: redis.Redis) -> None:
    raw = json.dumps(load_fixture("transcription")).encode()
    response = requests.post(
        f"{server}/callback",
        data=iter([raw[:100], raw[100:]]),
        headers={"scale-callback-auth": LIVE_KEY, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.json() == {"status": "queued"}


def test_fifty_concurrent_http_copies_make_one_job(server: str, redis_conn: redis.Redis) -> None:
    body = json.dumps(load_fixture("categorization")).encode()
    barrier = threading.Barrier(50)

    def send(_: int) -> str:
        barrier.wait()
        return str(post(server, body).json()["status"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(send, range(50)))
    assert sorted(set(answers)) == ["duplicate", "queued"]
    assert answers.count("queued") == 1
    assert redis_conn.llen("rq:queue:callbacks") == 1


def test_end_to_end_all_types_each_handler_once_duplicates_run_nothing(
    server: str, server_env: dict[str, str], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    names = [*REFERENCE_TYPES, "unknown_type"]
    for name in names:
        assert post(server, load_fixture(name)).json() == {"status": "queued"}
        assert post(server, load_fixture(name)).json() == {"status": "duplicate"}
    with process(worker_args("--no-scheduler"), server_env, tmp_path / "worker.log"):
        wait_for(lambda: len(effects(redis_conn)) == 2 * len(names), timeout=30, what="every handler to run")
        # Duplicates sent while the worker runs make no job either.
        for name in names:
            assert post(server, load_fixture(name)).json() == {"status": "duplicate"}
        wait_for(lambda: redis_conn.llen("rq:queue:callbacks") == 0, what="the queue to drain")
    done = effects(redis_conn)
    assert len(done) == len(set(done)) == 2 * len(names)
    assert {entry.split(":")[0] for entry in done} == {"record", "second"}
    # The recording handlers are "*" ones: they serve the unknown type too, so nothing is unhandled.
    assert redis_conn.llen("scb:unhandled") == 0


def test_gunicorn_refuses_to_boot_without_a_key(redis_server: RedisProcess, tmp_path: Path) -> None:
    env = child_env(REDIS_URL=redis_server.url)
    result = subprocess.run(
        web_command(f"127.0.0.1:{free_port()}"),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SCALE_CALLBACK_AUTH_KEY is not set" in result.stderr


def raw_exchange(base: str, request: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are on a plain socket and read the whole answer (the server closes).

    A server that answers before reading all of a broken request closes with bytes unread, so
    the kernel may end the connection with a reset after the answer: what came before counts.
    """
    host, port = base.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


BODY_MARKER = b"BODYTEXT-MUST-NOT-BE-LOGGED"


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(b"zz\r\n" + BODY_MARKER * 300 + b"\r\n0\r\n\r\n", id="size-not-hex"),
        pytest.param(b"5\r\n" + BODY_MARKER + b"\r\n0\r\n\r\n", id="chunk-longer-than-its-size"),
        pytest.param(b"1b\r\n" + BODY_MARKER + b"XX" + BODY_MARKER * 100, id="missing-terminator"),
        pytest.param(b"-5\r\n" + BODY_MARKER + b"\r\n0\r\n\r\n", id="negative-size"),
        pytest.param(b"fffffffffffffffffffff\r\n" + BODY_MARKER, id="size-too-long"),
    ],
)
def test_malformed_chunked_framing_is_a_400_and_no_body_text_is_logged(
    server_env: dict[str, str], redis_conn: redis.Redis, tmp_path: Path, chunks: bytes
) -> None:
    log = tmp_path / "gunicorn.log"
    with gunicorn(server_env, free_port(), log) as base:
        head = (
            b"POST /callback HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"scale-callback-auth: " + LIVE_KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        answer = raw_exchange(base, head + chunks)
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 400"), answer[:300]
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["error"] == "malformed_request"
        assert "framing" in body["details"]
        # The server still serves the next client.
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    assert redis_conn.dbsize() == 0
    logged = log.read_bytes()
    assert b"malformed_request" in logged or b"framing" in logged
    assert BODY_MARKER not in logged
    assert b"Exception on /callback" not in logged


def open_slow_connections(base: str, count: int) -> list[socket.socket]:
    """Connections that send a request line and the start of a header, then nothing more (yet)."""
    host, port = base.removeprefix("http://").split(":")
    slow = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"POST /callback HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        slow.append(sock)
    return slow


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_clients_stall_neither_callbacks_nor_health_checks(server: str, redis_conn: redis.Redis) -> None:
    # Fifty connections trickling their headers (no key needed). Under sync workers every other
    # request waited for the 20 s worker timeout. The bound here is generous; bench/slowloris.py
    # measures the real figure (docs/benchmarks.md).
    slow = open_slow_connections(server, 50)
    try:
        for n in range(5):
            for sock in slow:
                sock.sendall(b"a")  # still trickling
            started = time.monotonic()
            body = load_fixture("categorization")
            body["task_id"] = body["task"]["task_id"] = f"slowloris-probe-{n}"
            assert post(server, body).json() == {"status": "queued"}
            assert requests.get(f"{server}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - started < 5
        # A trickling connection is not held for ever: the server closes it by itself.
        wait_for(
            lambda: all(closed_by_server(sock) for sock in slow),
            timeout=15,
            what="the server to close the slow connections",
        )
    finally:
        for sock in slow:
            sock.close()
    assert redis_conn.llen("rq:queue:callbacks") == 5
