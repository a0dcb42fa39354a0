"""Server-sent events of a job: replay after a cursor, then live until the job is terminal.

Streams read Redis with ``redis.asyncio`` on the event loop, so an open stream holds no
thread. A stream that loses Redis ends cleanly; the client reconnects with
``Last-Event-ID`` and continues from the last event it got.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator

import anyio
import redis
import redis.asyncio as aioredis

from service.http.finite import finite
from service.http.problems import Problem
from thaw.job_status import TERMINAL_STATUSES
from thaw.store import Event
from thaw.store.events import after_start, event_from_entry, stream_entries
from thaw.store.keys import Keys
from thaw.store.redis_conn import READ_TIMEOUT_S

BATCH = 100
RETRY_MS = 2000

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


_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class StreamSlots:
    """Open streams per tenant, at most ``limit`` across every API process: a sorted set in
    Redis of stream ids scored by when their lease ends. An open stream renews its lease at
    each keepalive, so the slots of a process that died come free after ``lease_s``."""

    def __init__(
        self, client: redis.Redis, aclient: aioredis.Redis, limit: int, keepalive_s: float
    ):
        self.client = client
        self.aclient = aclient
        self.limit = limit
        self.lease_s = 3 * keepalive_s + 5
        self.keys = Keys()
        self._take = client.register_script(_TAKE)

    def take(self, tenant: str) -> StreamSlot:
        """A slot for ``tenant``, or a 429 when all are in use."""
        key, member, now = self.keys.streams(tenant), secrets.token_hex(12), time.time()
        args = [now, now + self.lease_s, self.limit, member, int(self.lease_s * 1000) + 1000]
        if not self._take(keys=[key], args=args):
            raise Problem(
                429,
                f"this key has {self.limit} event streams open, the most allowed "
                "(THAW_SSE_MAX_STREAMS_PER_TENANT); close one or poll "
                "GET /v1/jobs/{id}/events?after=",
                code="too_many_streams",
                headers={"Retry-After": "5"},
            )
        return StreamSlot(self, key, member)


class StreamSlot:
    """One open stream's place in its tenant's count; released once, however it ends."""

    def __init__(self, slots: StreamSlots, key: str, member: str):
        self.slots = slots
        self.key = key
        self.member = member
        self.released = False

    async def renew(self) -> None:
        score = time.time() + self.slots.lease_s
        await self.slots.aclient.zadd(self.key, {self.member: score}, xx=True)

    async def release(self) -> None:
        if not self.released:
            self.released = True
            with contextlib.suppress(redis.RedisError, OSError):
                await self.slots.aclient.zrem(self.key, self.member)

    def release_now(self) -> None:
        """From a finalizer, for a stream that was never iterated."""
        if not self.released:
            self.released = True
            with contextlib.suppress(redis.RedisError, OSError):
                self.slots.client.zrem(self.key, self.member)


def job_event_stream(
    client: aioredis.Redis,
    job_id: str,
    after: str | None,
    keepalive_s: float,
    slot: StreamSlot,
) -> AsyncIterator[str]:
    """The stream's frames; ``slot`` is released when it ends, however it ends."""
    stream = _frames(client, Keys(), job_id, after, keepalive_s, slot)
    weakref.finalize(stream, slot.release_now)
    return stream


async def _frames(
    client: aioredis.Redis,
    keys: Keys,
    job_id: str,
    after: str | None,
    keepalive_s: float,
    slot: StreamSlot,
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
            await slot.renew()
            events = [event_from_entry(eid, f) for eid, f in stream_entries(reply)]
            for event in events:
                cursor = event.id
                yield format_event(event)
            if len(events) == BATCH:
                continue
            status = await client.hget(keys.job(job_id), "status")
            if status is None or status in TERMINAL_STATUSES:
                async for frame in _drain(client, keys, job_id, cursor):
                    yield frame
                return
            if not events:
                yield ": keepalive\n\n"
    except (redis.RedisError, OSError) as exc:
        log.warning("event stream of %s ended: the job store is unreachable (%s)", job_id, exc)
        yield ": the job store is unreachable; reconnect with Last-Event-ID\n\n"
    finally:
        with anyio.CancelScope(shield=True):  # a client that left cancels the stream's task
            await slot.release()


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
