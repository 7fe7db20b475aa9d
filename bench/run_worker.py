"""One benchmark worker process: ``python -m bench.run_worker KIND QUEUE``, KIND callback|fork|simple|blpop."""

from __future__ import annotations

import os
import sys
import time

import redis
from rq import Queue, SimpleWorker, Worker
from rq.serializers import JSONSerializer

import bench.handlers  # noqa: F401 - registers the no-op handler
from callback_server.config import Settings
from workers.worker import build_worker


def main() -> None:
    kind, queue_name = sys.argv[1], sys.argv[2]
    url = os.environ["REDIS_URL"]
    if kind == "blpop":
        conn = redis.Redis.from_url(url)
        key = f"bench:list:{queue_name}"
        done = 0
        while conn.blpop([key], timeout=1):
            done += 1
        conn.rpush("bench:blpop:done", f"{done} {time.time()}")
        return
    if kind == "callback":
        settings = Settings.from_env()
        worker = build_worker(settings)
        worker.work(burst=True, logging_level="WARNING")
        return
    conn = redis.Redis.from_url(url)
    queue = Queue(queue_name, connection=conn, serializer=JSONSerializer)
    worker_class = {"fork": Worker, "simple": SimpleWorker}[kind]
    worker_class([queue], connection=conn, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")


if __name__ == "__main__":
    main()
