"""Creating simulator tasks: the reference's request bodies, form and JSON, and the official client's types."""

from __future__ import annotations

import base64
from typing import Any

from scaleapi.tasks import TaskType

from tests.support.keys import API_TEST_KEY

FORM = "application/x-www-form-urlencoded"
"""The content type of the reference's curl examples."""

CALLBACK_URL = "http://127.0.0.1:9/callback"
"""A callback URL nothing listens on (the tests that use it read the simulator, not a receiver)."""


def basic_auth(key: str) -> dict[str, str]:
    """The Authorization header Scale expects: the API key as Basic user name, empty password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


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


def create(client: Any, task_type: str = "categorization", **extra: Any) -> str:
    """Create a task through the simulator's API (a Flask test client) and return its id."""
    answer = client.post(
        f"/v1/task/{task_type}", json={**json_body(CALLBACK_URL, task_type), **extra}, headers=basic_auth(API_TEST_KEY)
    )
    assert answer.status_code == 200, answer.get_json()
    task_id: str = answer.get_json()["task_id"]
    return task_id


class _Type:
    """Stands in for a TaskType member: 2.x's enum has no phonecall or audiotranscription, and
    create_task only reads `.value` to build `task/{type}`."""

    def __init__(self, value: str) -> None:
        self.value = value


CLIENT_TYPES: dict[str, Any] = {
    "categorization": TaskType.Categorization,
    "transcription": TaskType.Transcription,
    "comparison": TaskType.Comparison,
    "annotation": TaskType.Annotation,
    "datacollection": TaskType.DataCollection,
    "phonecall": _Type("phonecall"),
    "audiotranscription": _Type("audiotranscription"),
}
"""What the official client's create_task takes for each reference type."""
