"""Server-sent events of a job: replay after a cursor, then live until the job is terminal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi.concurrency import run_in_threadpool

from service.stores import Stores
from thaw.store import Event

BATCH = 100
RETRY_MS = 2000


def format_event(event: Event) -> str:
    data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


async def job_event_stream(
    stores: Stores, job_id: str, after: str | None, keepalive_s: float
) -> AsyncIterator[str]:
    """Events after ``after`` as SSE frames; a comment every ``keepalive_s`` of silence.

    Ends once the job is terminal (or gone) and every event up to then was sent."""
    cursor = after
    yield f"retry: {RETRY_MS}\n\n"
    while True:
        events = await run_in_threadpool(stores.events.wait, job_id, cursor, keepalive_s, BATCH)
        for event in events:
            cursor = event.id
            yield format_event(event)
        if len(events) == BATCH:
            continue
        job = await run_in_threadpool(stores.jobs.get, job_id)
        if job is None or job.terminal:
            async for frame in _drain(stores, job_id, cursor):
                yield frame
            return
        if not events:
            yield ": keepalive\n\n"


async def _drain(stores: Stores, job_id: str, cursor: str | None) -> AsyncIterator[str]:
    while True:
        events = await run_in_threadpool(stores.events.read, job_id, cursor, BATCH)
        for event in events:
            cursor = event.id
            yield format_event(event)
        if len(events) < BATCH:
            return
