"""Deliveries through the real accept path, and the jobs that wait on the callbacks queue."""

from __future__ import annotations

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from callback_server.config import Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from tests.support.fixtures import load_fixture


def queued_jobs(conn: redis.Redis) -> list[Job]:
    """The jobs waiting on the callbacks queue, oldest first."""
    queue = Queue("callbacks", connection=conn, serializer=JSONSerializer)
    return queue.get_jobs()


def enqueue(settings: Settings, conn: redis.Redis, name: str, **changes: object) -> Delivery:
    """Queue a recorded callback (``changes`` applied to its task) through the real accept path."""
    body = load_fixture(name)
    body["task"].update(changes)
    delivery = Delivery.from_body(body, mode="live")
    assert DeliveryQueue.from_settings(settings, conn).accept(delivery)
    return delivery


def accept(conn: redis.Redis, settings: Settings, task_id: str, category: str = "red") -> str:
    """A categorization delivery of ``task_id`` through the real accept path (job on the queue, the
    ledger's accept entry); its id."""
    body = load_fixture("categorization")
    body["task_id"] = body["task"]["task_id"] = task_id
    body["response"] = body["task"]["response"] = {"category": category}
    delivery = Delivery.from_body(body, mode="live")
    assert DeliveryQueue.from_settings(settings, conn).accept(delivery)
    return delivery.delivery_id
