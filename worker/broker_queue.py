"""Which jobs have a message waiting in the broker: kombu's Redis transport keeps one list
per queue (and one per priority step), each entry a JSON envelope around the task."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from thaw.dispatch import TRAIN_TASK, broker_queue_keys


def waiting_job_ids(client: redis.Redis, queue: str) -> set[str]:
    """Job ids of training messages not yet delivered to any worker."""
    pipe = client.pipeline(transaction=False)
    for key in broker_queue_keys(queue):
        pipe.lrange(key, 0, -1)
    out: set[str] = set()
    for messages in pipe.execute():
        for raw in messages:
            job_id = _job_of(raw)
            if job_id is not None:
                out.add(job_id)
    return out


def _job_of(raw: Any) -> str | None:
    try:
        envelope = json.loads(raw)
        if envelope.get("headers", {}).get("task") != TRAIN_TASK:
            return None
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
