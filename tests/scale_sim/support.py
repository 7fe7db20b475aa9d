"""Helpers for the simulator's tests: a scripted callback receiver, polling, reference request bodies."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from scale_sim.validation import REFERENCE_TYPES  # noqa: F401 - re-exported for the tests
from tests.processes import wait_for

T = TypeVar("T")

TEST_KEY = "test_0123456789abcdef"
OTHER_TEST_KEY = "test_someone_else"
LIVE_KEY = "live_0123456789abcdef"
CALLBACK_KEY = "sim-callback-auth-key-for-tests"
MIB = 1024 * 1024


def basic_auth(key: str) -> dict[str, str]:
    """The Authorization header Scale expects: the API key as Basic user name, empty password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@dataclass
class Received:
    """One callback as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    size: int
    at: float
    answered: int


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Receiver:
    """A local HTTP server standing in for the project's callback receiver.

    `script` holds the statuses of the next answers in order (then 200 for ever); a status of
    -1 answers after sleeping `slow_seconds` (to provoke the sender's timeout). Bodies over
    `max_bytes` are answered 413 (after draining them), as a receiver with a 10 MiB limit does.
    """

    script: list[int] = field(default_factory=list)
    max_bytes: int | None = None
    slow_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}/callback"

    def respond_with(self, *statuses: int) -> None:
        with self._lock:
            self.script[:] = list(statuses)

    def _next_status(self) -> int:
        with self._lock:
            return self.script.pop(0) if self.script else 200

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        status = self._next_status()
        size = request.content_length or 0
        if self.max_bytes is not None and size > self.max_bytes:
            stream = request.stream
            while stream.read(1 << 20):
                pass
            body = None
            status = 413
        else:
            raw = request.get_data()
            size = len(raw)
            body = json.loads(raw) if raw else None
        if status == -1:
            time.sleep(self.slow_seconds)
            status = 200
        with self._lock:
            self.received.append(Received(request.path, dict(request.headers), body, size, time.time(), status))
        return Response(b"ok" if status == 200 else b"no", status=status)(environ, start_response)

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.received if r.body is not None]

    def for_task(self, task_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.body is not None and r.body.get("task_id") == task_id]

    def wait_for(self, count: int, task_id: str | None = None, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` callbacks (for `task_id`, if given) arrived; return them."""

        def arrived() -> list[Received]:
            with self._lock:
                got = [r for r in self.received if task_id is None or (r.body or {}).get("task_id") == task_id]
            return got if len(got) >= count else []

        return wait_for(arrived, timeout, what=f"{count} callbacks")


def reference_bodies(callback_url: str) -> dict[str, list[tuple[str, str]]]:
    """The reference's curl examples as form items (repeated keys and brackets), one per task type."""
    return {
        "categorization": [
            ("callback_url", callback_url),
            ("instruction", "Is this company public or private?"),
            ("attachment_type", "website"),
            ("attachment", "http://www.google.com/"),
            ("categories", "public"),
            ("categories", "private"),
        ],
        "transcription": [
            ("callback_url", callback_url),
            ("instruction", "Transcribe the given fields."),
            ("attachment_type", "website"),
            ("attachment", "http://news.ycombinator.com/"),
            ("fields[title]", "Title of Webpage"),
            ("fields[top_result]", "Title of the top result"),
        ],
        "phonecall": [
            ("callback_url", callback_url),
            ("instruction", "Call this person and follow the script provided, recording responses"),
            ("phone_number", "5055006865"),
            ("entity_name", "Alexandr Wang"),
            (
                "script",
                "Hello {{name}}! Are you happy today? (pause) One more thing - what is your email address?",
            ),
            ("fields[email]", "Email Address"),
            ("choices", "He is happy"),
            ("choices", "He is not happy"),
        ],
        "comparison": [
            ("callback_url", callback_url),
            ("instruction", "Do the objects in these images have the same pattern?"),
            ("attachment_type", "image"),
            ("attachments", "http://i.ebayimg.com/00/$T2eC16dHJGwFFZKjy5ZjBRfNyMC4Ig~~_32.JPG"),
            ("attachments", "http://images.wisegeek.com/checkered-tablecloth.jpg"),
            ("choices", "yes"),
            ("choices", "no"),
        ],
        "annotation": [
            ("callback_url", callback_url),
            ("instruction", "Draw a box around each **baby cow** and **big cow**."),
            ("attachment_type", "image"),
            ("attachment", "http://i.imgur.com/v4cBreD.jpg"),
            ("objects_to_annotate", "baby cow"),
            ("objects_to_annotate", "big cow"),
            ("with_labels", "true"),
            ("examples[0][correct]", "true"),
            ("examples[0][image]", "http://i.imgur.com/lj6e98s.jpg"),
            ("examples[0][explanation]", "The boxes are tight and accurate"),
            ("examples[1][correct]", "false"),
            ("examples[1][image]", "http://i.imgur.com/HIrvIDq.jpg"),
            ("examples[1][explanation]", "The boxes are neither accurate nor complete"),
        ],
        "datacollection": [
            ("callback_url", callback_url),
            ("instruction", "Find the URL for the hiring page for the company with attached website."),
            ("attachment_type", "website"),
            ("attachment", "https://www.scaleapi.com/"),
            ("fields[hiring_page]", "Hiring Page URL"),
        ],
        "audiotranscription": [
            ("callback_url", callback_url),
            ("attachment_type", "audio"),
            (
                "attachment",
                "https://storage.googleapis.com/deepmind-media/pixie/knowing-what-to-say/speaker-3.wav",
            ),
            ("verbatim", "false"),
        ],
    }


def curl_data(items: list[tuple[str, str]]) -> str:
    """A body as `curl -d k=v -d k=v` sends it: joined with &, brackets and spaces left as typed."""
    return "&".join(f"{key}={value}" for key, value in items)


FORM = "application/x-www-form-urlencoded"


def json_body(callback_url: str, task_type: str) -> dict[str, Any]:
    """The reference's Python-client example parameters for `task_type`, as a JSON body."""
    bodies: dict[str, dict[str, Any]] = {
        "categorization": {
            "instruction": "Is this company public or private?",
            "attachment_type": "website",
            "attachment": "http://www.google.com/",
            "categories": ["public", "private"],
        },
        "transcription": {
            "instruction": "Transcribe the given fields.",
            "attachment_type": "website",
            "attachment": "http://news.ycombinator.com/",
            "fields": {"title": "Title of Webpage", "top_result": "Title of the top result"},
        },
        "phonecall": {
            "instruction": "Call this person and follow the script provided, recording responses",
            "phone_number": "5055006865",
            "entity_name": "Alexandr Wang",
            "script": "Hello {{name}}! Are you happy today?",
            "fields": {"email": "Email Address"},
            "choices": ["He is happy", "He is not happy"],
        },
        "comparison": {
            "instruction": "Do the objects in these images have the same pattern?",
            "attachment_type": "image",
            "attachments": ["http://i.ebayimg.com/a.JPG", "http://images.wisegeek.com/b.jpg"],
            "choices": ["yes", "no"],
        },
        "annotation": {
            "instruction": "Draw a box around each **baby cow** and **big cow**",
            "attachment_type": "image",
            "attachment": "http://i.imgur.com/v4cBreD.jpg",
            "objects_to_annotate": ["baby cow", "big cow"],
            "with_labels": True,
            "examples": [
                {"correct": False, "image": "http://i.imgur.com/lj6e98s.jpg", "explanation": "tight"},
                {"correct": True, "image": "http://i.imgur.com/HIrvIDq.jpg"},
            ],
        },
        "datacollection": {
            "instruction": "Find the URL for the hiring page for the company with attached website.",
            "attachment_type": "website",
            "attachment": "https://www.scaleapi.com",
            "fields": {"hiring_page": "Hiring Page URL"},
        },
        "audiotranscription": {
            "attachment_type": "audio",
            "attachment": "https://storage.googleapis.com/deepmind-media/pixie/speaker-3.wav",
            "verbatim": False,
        },
        **MODERN_BODIES,
    }
    return {"callback_url": callback_url, **bodies[task_type]}


MODERN_BODIES: dict[str, dict[str, Any]] = {
    "imageannotation": {
        "instruction": "Draw a box around each car and a polygon around each sign.",
        "attachment": "https://example.com/images/street.jpg",
        "geometries": {
            "box": {"objects_to_annotate": ["car", {"choice": "person", "subchoices": ["adult", "child"]}]},
            "polygon": {"objects_to_annotate": ["sign"]},
        },
        "annotation_attributes": {
            "occluded": {"type": "category", "description": "Is it occluded?", "choices": ["yes", "no"]},
        },
        "project": "streets",
    },
    "textcollection": {
        "attachments": [{"type": "website", "content": "https://example.com/company"}],
        "fields": [
            {"type": "text", "field_id": "ceo", "title": "Who is the CEO?"},
            {"type": "number", "field_id": "employees", "title": "How many employees?"},
            {
                "type": "category",
                "field_id": "sector",
                "title": "Sector",
                "choices": [{"label": "Tech", "value": "tech"}, {"label": "Retail", "value": "retail"}],
            },
        ],
    },
    "namedentityrecognition": {
        "text": "Alexandr Wang founded Scale in San Francisco in 2016.",
        "labels": [{"name": "PERSON"}, {"name": "ORG"}, {"name": "PLACE", "display_name": "Place"}],
        "relationships": [{"name": "founded"}],
    },
    "documenttranscription": {
        "attachment": "https://example.com/docs/invoice.pdf",
        "features": [{"type": "block", "label": "total"}, {"type": "block", "label": "vendor"}],
    },
    "videoannotation": {
        "attachments": ["https://example.com/frames/0001.jpg", "https://example.com/frames/0002.jpg"],
        "geometries": {"box": {"objects_to_annotate": ["car"]}},
        "frame_rate": 2,
    },
    "videoplaybackannotation": {
        "attachment": "https://example.com/videos/drive.mp4",
        "geometries": {"box": {"objects_to_annotate": ["car"]}},
        "events_to_annotate": ["lane change"],
    },
    "lidarannotation": {
        "attachments": ["https://example.com/lidar/frame-0.json", "https://example.com/lidar/frame-1.json"],
        "labels": ["car", "pedestrian"],
    },
}
"""A documented request per modern type (JSON), as the official client's create_task would send it."""


ISO_MS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
"""Timestamps as the contract writes them: UTC, milliseconds, Z."""

TODAY_FIELDS = (
    "updated_at", "project", "batch", "unique_id", "tags", "audits", "customer_review_status", "is_test",
    "callback_completed",
)  # fmt: skip
"""What every task object carries today (/tmp/team/events-contract.md)."""


def assert_event_body(body: dict[str, Any], event: str) -> None:
    """Check a callback body against the receiver's contract for `event`.

    `event` is completed, error, audit_accepted|fixed|rejected|commented, or recalled.
    """
    import re

    task = body["task"]
    assert list(body) == ["task_id", "status", "response", "task"]
    assert body["task_id"] == task["task_id"]
    assert body["status"] == task["status"]
    assert body["response"] == task.get("response")
    for name in TODAY_FIELDS:
        assert name in task, name
    assert isinstance(task["tags"], list) and isinstance(task["audits"], list)
    assert isinstance(task["callback_completed"], bool)
    for name in ("created_at", "updated_at", "completed_at"):
        if task.get(name) is not None:
            assert re.match(ISO_MS, task[name]), (name, task[name])
    for audit in task["audits"]:
        assert set(audit) == {"audited_by", "audited_at", "audit_time_secs", "audit_result", "audit_source"}
        assert "@" in audit["audited_by"] and re.match(ISO_MS, audit["audited_at"])
        assert audit["audit_result"] in ("accepted", "fixed", "rejected", "commented")
        assert audit["audit_source"] in ("customer", "scale")
    assert task["updated_at"] >= task["created_at"]
    if event == "completed":
        assert task["status"] == "completed" and isinstance(body["response"], dict) and task["completed_at"]
        assert all(a["audited_at"] < task["completed_at"] for a in task["audits"])
    elif event == "error":
        assert task["status"] == "error" and task.get("completed_at") is None
        response = body["response"]
        assert isinstance(response["error"], str) and response["error"]
        [key] = set(response) - {"error"}
        assert key in ("attachments", "frames")
        assert response[key] and all(set(item) == {"statusCode", "url"} for item in response[key])
        assert task["audits"] == [] and task["customer_review_status"] is None
    elif event.startswith("audit_"):
        result = event.removeprefix("audit_")
        assert task["status"] == "completed" and isinstance(body["response"], dict)
        newest = task["audits"][-1]
        assert newest["audit_result"] == result == task["customer_review_status"]
        assert newest["audited_at"] >= task["completed_at"]
        assert task["updated_at"] == newest["audited_at"]
    elif event == "recalled":
        assert task["status"] == "pending" and body["response"] is None and task["response"] is None
        assert task["completed_at"] and task["updated_at"] > task["completed_at"]
    else:
        raise AssertionError(f"unknown event {event}")


CALLBACK_URL = "http://127.0.0.1:9/callback"
"""A callback URL nothing listens on (the tests that use it read the simulator, not a receiver)."""


def create(client: Any, task_type: str = "categorization", **extra: Any) -> str:
    """Create a task through the simulator's API (a Flask test client) and return its id."""
    answer = client.post(
        f"/v1/task/{task_type}", json={**json_body(CALLBACK_URL, task_type), **extra}, headers=basic_auth(TEST_KEY)
    )
    assert answer.status_code == 200, answer.get_json()
    task_id: str = answer.get_json()["task_id"]
    return task_id
