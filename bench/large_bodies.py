"""How long a body at the size limit costs the ack path: parse, validate, identity (no Redis).

Run: ``.venv/bin/python -m bench.large_bodies [--limit BYTES] [--repeat 3]``. Each body is
built just under MAX_CONTENT_LENGTH (default 10 MiB; the response appears twice, as Scale
sends it: beside the task and inside it). Valid bodies go through validation and the
delivery identity; invalid ones are refused by validation. Prints the best of the repeats.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from callback_server import defaults
from callback_server.deliveries import Delivery
from callback_server.exceptions import InvalidCallbackError
from callback_server.schemas import load_callback_text

ROOT = Path(__file__).resolve().parent.parent

BOX = {"left": 1, "top": 2, "width": 3, "height": 4, "label": "car"}
POLYGON = {"type": "polygon", "label": "road", "vertices": [{"x": 1, "y": 2}] * 20}
CASES: dict[str, tuple[str, Any]] = {
    "annotation: valid boxes": ("annotation", BOX),
    "annotation: empty boxes (invalid)": ("annotation", {}),
    "annotation: boxes with a string coordinate (invalid)": ("annotation", {**BOX, "left": "x"}),
    "imageannotation: valid 20-vertex polygons": ("imageannotation", POLYGON),
}


def body(task_type: str, item: Any, limit: int) -> bytes:
    """A callback whose response is a list of ``item`` filling the body up to just under ``limit``."""
    base = json.loads((ROOT / "tests" / "fixtures" / "annotation.json").read_text())
    base["task"]["type"] = task_type
    count = (limit - 2048) // 2 // (len(json.dumps(item)) + 2)
    base["response"] = base["task"]["response"] = {"annotations": [item] * count}
    raw = json.dumps(base).encode()
    assert len(raw) < limit, len(raw)
    return raw


def cost(raw: bytes) -> tuple[float, str]:
    """Seconds to accept or refuse one body, and which it was."""
    started = time.perf_counter()
    try:
        loaded, text = load_callback_text(raw)
        Delivery.from_body(loaded, mode="live", raw=text)
        outcome = "valid"
    except InvalidCallbackError:
        outcome = "refused (quarantined)"
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=defaults.MAX_CONTENT_LENGTH)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"| body (just under {args.limit / 2**20:.1f} MiB) | outcome | seconds (best of {args.repeat}) |")
    print("|---|---|---|")
    for name, (task_type, item) in CASES.items():
        raw = body(task_type, item, args.limit)
        runs = [cost(raw) for _ in range(args.repeat)]
        print(f"| {name} | {runs[0][1]} | {min(seconds for seconds, _ in runs):.2f} |")


if __name__ == "__main__":
    main()
