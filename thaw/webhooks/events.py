"""Webhook event types and the payload each delivery carries."""

from __future__ import annotations

import json
import math
from typing import Any

from thaw.store import Job
from thaw.store.codec import iso

JOB_EVENT_TYPES = (
    "job.queued",
    "job.running",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
)


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
