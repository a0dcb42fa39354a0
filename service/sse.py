"""Server-sent events of a job: replay after a cursor, then live until the job is terminal.

Streams read Redis with ``redis.asyncio`` on the event loop, so an open stream holds no
thread. A stream that loses Redis ends cleanly; the client reconnects with
``Last-Event-ID`` and continues from the last event it got.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable

import redis
import redis.asyncio as aioredis

from service.finite import finite
from service.problems import Problem
from thaw.store import Event
from thaw.store.events import after_start, event_from_entry, stream_entries
from thaw.store.job_record import TERMINAL_STATUSES
from thaw.store.keys import Keys
from thaw.store.redis_conn import READ_TIMEOUT_S

BATCH = 100
RETRY_MS = 2000
_TERMINAL = frozenset(str(s) for s in TERMINAL_STATUSES)

log = logging.getLogger("thaw.api")


def format_event(event: Event) -> str:
    data = json.dumps(
        finite(event.to_dict()), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


def async_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=READ_TIMEOUT_S,
        socket_keepalive=True,
    )


class StreamSlots:
    """Open streams per tenant, at most ``limit`` each (in this API process)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, tenant: str) -> Callable[[], None]:
        """A slot for ``tenant`` (429 when all are in use) and the call that frees it once."""
        with self._lock:
            if self._open[tenant] >= self.limit:
                raise Problem(
                    429,
                    f"this key has {self.limit} event streams open, the most allowed "
                    "(THAW_SSE_MAX_STREAMS_PER_TENANT); close one or poll "
                    "GET /v1/jobs/{id}/events?after=",
                    code="too_many_streams",
                    headers={"Retry-After": "5"},
                )
            self._open[tenant] += 1
        freed = threading.Event()

        def free() -> None:
            with self._lock:
                if freed.is_set():
                    return
                freed.set()

                self._open[tenant] -= 1
                if self._open[tenant] <= 0:
                    del self._open[tenant]

        return free

    def open_count(self, tenant: str) -> int:
        with self._lock:
            return self._open[tenant]


def job_event_stream(
    client: aioredis.Redis,
    job_id: str,
    after: str | None,
    keepalive_s: float,
    free: Callable[[], None],
) -> AsyncIterator[str]:
    """The stream's frames; ``free`` runs when it ends, however it ends."""
    stream = _frames(client, Keys(), job_id, after, keepalive_s, free)
    weakref.finalize(stream, free)
    return stream


async def _frames(
    client: aioredis.Redis,
    keys: Keys,
    job_id: str,
    after: str | None,
    keepalive_s: float,
    free: Callable[[], None],
) -> AsyncIterator[str]:
    """Events after ``after`` as SSE frames; a comment every ``keepalive_s`` of silence.

    Ends once the job is terminal (or gone) and every event up to then was sent."""
    cursor = after or "0-0"
    block_ms = max(1, int(keepalive_s * 1000))
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            reply = await client.xread(
                {keys.job_events(job_id): cursor}, count=BATCH, block=block_ms
            )
            events = [event_from_entry(eid, f) for eid, f in stream_entries(reply)]
            for event in events:
                cursor = event.id
                yield format_event(event)
            if len(events) == BATCH:
                continue
            status = await client.hget(keys.job(job_id), "status")
            if status is None or status in _TERMINAL:
                async for frame in _drain(client, keys, job_id, cursor):
                    yield frame
                return
            if not events:
                yield ": keepalive\n\n"
    except (redis.RedisError, OSError) as exc:
        log.warning("event stream of %s ended: the job store is unreachable (%s)", job_id, exc)
        yield ": the job store is unreachable; reconnect with Last-Event-ID\n\n"
    finally:
        free()


async def _drain(
    client: aioredis.Redis, keys: Keys, job_id: str, cursor: str
) -> AsyncIterator[str]:
    while True:
        start = after_start(cursor)
        if start is None:
            return
        entries = await client.xrange(keys.job_events(job_id), start, "+", count=BATCH)
        for eid, fields in entries:
            event = event_from_entry(eid, fields)
            cursor = event.id
            yield format_event(event)
        if len(entries) < BATCH:
            return
