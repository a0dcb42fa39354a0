"""Webhook event types and the payload each delivery carries."""

from __future__ import annotations

import json
import math
from typing import Any

from thaw.store import Job
from thaw.store.checkpoint_tasks import CheckpointTask
from thaw.store.codec import iso

JOB_EVENT_TYPES = (
    "job.queued",
    "job.running",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
)
TASK_EVENT_TYPES = (
    "evaluation.succeeded",
    "evaluation.failed",
    "export.succeeded",
    "export.failed",
)
EVENT_TYPES = JOB_EVENT_TYPES + TASK_EVENT_TYPES


def event_type(status_data: dict[str, Any]) -> str | None:
    """The webhook type of a job status event; None for a cancel request on a running job
    (the job is still running; ``job.cancelled`` follows when it stops)."""
    if status_data.get("cancel_requested"):
        return None
    kind = f"job.{status_data.get('status')}"
    return kind if kind in JOB_EVENT_TYPES else None


def event_id(job_id: str, stream_id: str) -> str:
    """The stable id of one status event, sent as ``webhook-id`` on every try of it."""
    return f"evt_{job_id.removeprefix('job_')}_{stream_id.replace('-', '_')}"


def payload(kind: str, stream_id: str, job_id: str, data: dict[str, Any], job: Job | None) -> str:
    """The JSON body of a delivery, in the Standard Webhooks shape (type, timestamp, data)."""
    millis = int(stream_id.split("-", 1)[0])
    body: dict[str, Any] = {
        "id": job_id,
        "object": "job",
        "status": data.get("status"),
        "attempts": data.get("attempts"),
        "links": {"self": f"/v1/jobs/{job_id}", "metrics": f"/v1/jobs/{job_id}/metrics"},
    }
    if job is not None:
        body["name"] = job.name
        if kind in ("job.succeeded", "job.failed", "job.cancelled"):
            body["metrics"] = {k: v for k, v in job.metrics.items() if not _non_finite(v)}
    if data.get("error"):
        body["error"] = data["error"]
    document = {"type": kind, "timestamp": iso(millis / 1000), "data": body}
    return json.dumps(document, separators=(",", ":"), allow_nan=False)


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def task_event_type(kind: str, status_data: dict[str, Any]) -> str | None:
    """``evaluation.succeeded`` and the like, for a finished evaluation or export."""
    name = f"{kind}.{status_data.get('status')}"
    return name if name in TASK_EVENT_TYPES else None


def task_event_id(task_id: str, feed_id: str) -> str:
    """The stable id of a task's end: its feed entry is written once, with the transition."""
    return f"evt_{task_id}_{feed_id.replace('-', '_')}"


def task_payload(name: str, feed_id: str, task: CheckpointTask | None, task_id: str) -> str:
    """The body for an evaluation's or export's end: its record with the scalar results
    (accuracy, F1, the ONNX difference), not the tables."""
    millis = int(feed_id.split("-", 1)[0])
    kind = name.split(".", 1)[0]
    body: dict[str, Any] = {"id": task_id, "object": kind, "status": name.split(".", 1)[1]}
    if task is not None:
        body.update(job_id=task.job_id, checkpoint=task.checkpoint, error=task.error)
        body["result"] = {
            k: v
            for k, v in (task.result or {}).items()
            if isinstance(v, str | int | float) and not _non_finite(v)
        }
    body["links"] = {"self": f"/v1/{kind}s/{task_id}"}
    document = {"type": name, "timestamp": iso(millis / 1000), "data": body}
    return json.dumps(document, separators=(",", ":"), allow_nan=False)
