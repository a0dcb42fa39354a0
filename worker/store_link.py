"""A running job's link to Redis that rides out an outage.

Writes go through an ordered outbox: sent at once while Redis answers, kept (and
retried with backoff) while it does not, so training never waits on a restarting
Redis and nothing is lost within ``store_outbox_max`` entries. Progress updates are
coalesced to the newest. Reads that find Redis away answer "unknown" to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)
"""Redis is away (down, restarting, loading its AOF); anything else is a real error."""

FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0


class StoreUnreachable(Exception):
    """Redis did not answer for the whole outage allowance."""


class StoreLink:
    def __init__(self, outage_s: float, outbox_max: int):
        self.outage_s = outage_s
        self.outbox_max = outbox_max
        self._outbox: OrderedDict[object, Callable[[], object]] = OrderedDict()
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0
        self._backoff = FIRST_BACKOFF_S
        self.dropped = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def send(self, write: Callable[[], object], coalesce: str | None = None) -> None:
        """Queue ``write`` behind earlier ones and try to flush; never raises for an
        outage. ``coalesce`` replaces a not yet sent write with the same key."""
        with self._lock:
            key: object = coalesce if coalesce is not None else object()
            self._outbox.pop(key, None)
            self._outbox[key] = write
            while len(self._outbox) > self.outbox_max:
                self._outbox.popitem(last=False)
                self.dropped += 1
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Send what is queued, in order; ``True`` when the outbox is empty."""
        with self._lock:
            if not force and self.down and time.monotonic() < self._next_try:
                return False
            while self._outbox:
                key, write = next(iter(self._outbox.items()))
                try:
                    write()
                except OUTAGE_ERRORS as exc:
                    self._failed(exc)
                    return False
                self._outbox.pop(key, None)
                self._recovered()
            return True

    def read(self, fn: Callable[[], T], unknown: T) -> T:
        """``fn()``, or ``unknown`` while Redis is away (tried again after a backoff)."""
        if self.down and time.monotonic() < self._next_try:
            return unknown
        try:
            value = fn()
        except OUTAGE_ERRORS as exc:
            self._failed(exc)
            return unknown
        self._recovered()
        return value

    def must(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` after flushing the outbox, retried with backoff for the outage allowance;
        raises StoreUnreachable after it."""
        deadline = time.monotonic() + self.outage_s
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                if self.flush(force=True):
                    value = fn()
                    self._recovered()
                    return value
            except OUTAGE_ERRORS as exc:
                self._failed(exc)
            if time.monotonic() + backoff > deadline:
                raise StoreUnreachable(f"Redis did not answer for {self.outage_s:.0f} s: {what}")
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._backoff = FIRST_BACKOFF_S
            log.warning("Redis unreachable (%s); buffering this job's writes", exc)
        else:
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        self._next_try = now + self._backoff

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "Redis answers again after %.1f s; %d buffered writes follow",
                time.monotonic() - self._down_since,
                len(self._outbox),
            )
            self._down_since = None
            self._backoff = FIRST_BACKOFF_S
