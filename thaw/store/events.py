"""An append-only event stream per job (a Redis Stream), readable after a cursor or live."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from thaw.store.codec import decoded, dumps, iso, loads, text
from thaw.store.errors import InvalidCursor
from thaw.store.keys import Keys

EVENT_TYPES = frozenset(
    {"status", "phase", "metrics", "progress", "checkpoint", "log", "plateau", "stopped_early"}
)
LEVELS = frozenset({"debug", "info", "warning", "error"})
EVENT_ID = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20})?$")
_ID_PART_MAX = 2**64 - 1
DEFAULT_MAXLEN = 10_000


def check_event(type: str, level: str) -> None:
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; one of {sorted(EVENT_TYPES)}")
    if level not in LEVELS:
        raise ValueError(f"unknown event level {level!r}; one of {sorted(LEVELS)}")


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    level: str
    time: str
    data: dict[str, Any]
    token: int = 0
    """The fencing token of the claim whose holder wrote it (0: before any claim)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "level": self.level,
            "time": self.time,
            "data": self.data,
        }


def valid_event_id(value: str) -> bool:
    """An event id Redis accepts: ``MS`` or ``MS-SEQ``, each part a 64-bit unsigned number."""
    return bool(EVENT_ID.fullmatch(value)) and all(
        int(part) <= _ID_PART_MAX for part in value.split("-")
    )


def after_start(after: str) -> str | None:
    """The exclusive XRANGE start for events after ``after``; ``None`` when no id can follow
    it (the largest id, which Redis refuses as an exclusive start)."""
    parts = after.split("-")
    if len(parts) == 2 and all(int(part) == _ID_PART_MAX for part in parts):
        return None
    return f"({after}"


def event_from_entry(entry_id: bytes | str, fields: Mapping[Any, Any]) -> Event:
    eid = text(entry_id) or ""
    values = decoded(dict(fields))
    millis = int(eid.split("-", 1)[0])
    return Event(
        id=eid,
        type=values.get("type", "log"),
        level=values.get("level", "info"),
        time=iso(millis / 1000) or "",
        data=loads(values.get("data"), {}),
        token=int(values.get("token") or 0),
    )


def _check_cursor(after: str) -> None:
    if not valid_event_id(after):
        raise InvalidCursor(after[:40], "an event id such as 1700000000000-0")


class EventLog:
    """Job events. Status events are appended by ``JobStore`` inside its transitions."""

    def __init__(self, client: redis.Redis, prefix: str = "thaw", maxlen: int = DEFAULT_MAXLEN):
        self.redis = client
        self.keys = Keys(prefix)
        self.maxlen = maxlen

    def append(self, job_id: str, type: str, data: Mapping[str, Any], level: str = "info") -> str:
        """An unfenced append (the API's own notes); a job's holder appends through
        ``JobStore.holder_event`` so a stale holder's events are refused."""
        check_event(type, level)
        fields = {"type": type, "level": level, "data": dumps(dict(data))}
        entry_id = self.redis.xadd(
            self.keys.job_events(job_id), fields, maxlen=self.maxlen, approximate=True
        )
        return text(entry_id) or ""

    def read(self, job_id: str, after: str | None = None, limit: int = 100) -> list[Event]:
        """Up to ``limit`` events, oldest first, strictly after the event id ``after``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        start = "-"
        if after is not None:
            _check_cursor(after)
            start = after_start(after)
            if start is None:
                return []
        entries = self.redis.xrange(self.keys.job_events(job_id), start, "+", count=limit)
        return [event_from_entry(eid, fields) for eid, fields in entries]

    def last_id(self, job_id: str) -> str | None:
        """The newest event id, for a consumer that only wants what comes next."""
        entries = self.redis.xrevrange(self.keys.job_events(job_id), "+", "-", count=1)
        return text(entries[0][0]) if entries else None


def stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    """The (id, fields) entries of a one-stream XREAD reply in any client reply shape:
    RESP2 ``[[name, entries]]``, RESP3 ``{name: entries}`` or ``{name: [entries]}``."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else [item[1] for item in reply]
    out: list[tuple[Any, Any]] = []
    for entries in streams:
        if (
            entries
            and isinstance(entries[0], list)
            and entries[0]
            and isinstance(entries[0][0], tuple | list)
        ):
            entries = entries[0]
        out.extend((entry[0], entry[1]) for entry in entries)
    return out
