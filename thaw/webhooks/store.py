"""Webhooks, their deliveries and the feed of job status events in Redis.

A job transition appends to the feed when the job's tenant has a webhook (in the same
script as the transition, see ``thaw.store.lua``); a dispatcher reads the feed through a
consumer group, turns each entry into one delivery per subscribed webhook, and tries due
deliveries from a sorted set with a lease."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from thaw.store.codec import decoded, iso, loads, text
from thaw.store.events import stream_entries
from thaw.store.keys import Keys
from thaw.webhooks import scripts
from thaw.webhooks.errors import TooManyWebhooks

WEBHOOK_ID = re.compile(r"^wh_[0-9a-f]{24}$")
FEED_GROUP = "webhook-dispatchers"


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _ts(value: str | None) -> float | None:
    return float(value) if value else None


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    tenant: str
    url: str
    events: list[str]
    description: str
    secret: str
    created_ts: float

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Webhook:
        return cls(
            id=h["id"],
            tenant=h.get("tenant", ""),
            url=h.get("url", ""),
            events=loads(h.get("events"), []),
            description=h.get("description", ""),
            secret=h.get("secret", ""),
            created_ts=float(h.get("created_at") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        """What the owner sees; the secret only once, in the answer to its creation."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "created_at": iso(self.created_ts),
            "links": {"deliveries": f"/v1/webhooks/{self.id}/deliveries"},
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    webhook_id: str
    type: str
    job_id: str
    payload: str
    status: str
    attempts: int
    created_ts: float
    next_attempt_ts: float | None
    last_attempt_ts: float | None
    response_status: int | None
    error: str
    tries: list[dict[str, Any]]

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Delivery:
        tries = loads(h.get("tries"), [])
        return cls(
            id=h["id"],
            webhook_id=h.get("webhook_id", ""),
            type=h.get("type", ""),
            job_id=h.get("job_id", ""),
            payload=h.get("payload", "{}"),
            status=h.get("status", "pending"),
            attempts=int(h.get("attempts") or 0),
            created_ts=float(h.get("created_at") or 0),
            next_attempt_ts=_ts(h.get("next_attempt_at")),
            last_attempt_ts=_ts(h.get("last_attempt_at")),
            response_status=int(h["response_status"]) if h.get("response_status") else None,
            error=h.get("error", ""),
            tries=tries if isinstance(tries, list) else [],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "type": self.type,
            "job_id": self.job_id,
            "status": self.status,
            "attempts": self.attempts,
            "response_status": self.response_status,
            "error": self.error or None,
            "created_at": iso(self.created_ts),
            "last_attempt_at": iso(self.last_attempt_ts),
            "next_attempt_at": iso(self.next_attempt_ts) if self.status == "pending" else None,
            "tries": [
                {
                    "attempt": t.get("attempt"),
                    "at": iso(float(t["at"])) if t.get("at") else None,
                    "status_code": t.get("status_code"),
                    "error": t.get("error") or None,
                }
                for t in self.tries
            ],
            "payload": json.loads(self.payload),
        }


@dataclass(frozen=True, slots=True)
class Claimed:
    webhook_id: str
    event_id: str
    attempt: int


class WebhookStore:
    def __init__(self, client: redis.Redis, prefix: str = "thaw"):
        self.redis = client
        self.keys = Keys(prefix)
        self._create = client.register_script(scripts.CREATE)
        self._delete = client.register_script(scripts.DELETE)
        self._add_delivery = client.register_script(scripts.ADD_DELIVERY)
        self._claim_due = client.register_script(scripts.CLAIM_DUE)
        self._settle = client.register_script(scripts.SETTLE)

    def _run(self, script: Any, *args: str | int | float) -> Any:
        return script(args=[self.keys.prefix, 0, *args])

    # The owner's side -------------------------------------------------------------------

    def create(
        self, tenant: str, url: str, events: Sequence[str], description: str, max_per_tenant: int
    ) -> Webhook:
        webhook_id = "wh_" + secrets.token_hex(12)
        secret = new_secret()
        reply = self._run(
            self._create,
            tenant,
            webhook_id,
            url,
            json.dumps(list(events)),
            description,
            max_per_tenant,
            secret,
        )
        if text(reply[0]) == "quota":
            raise TooManyWebhooks(max_per_tenant)
        created = float(text(reply[1]) or 0)
        return Webhook(webhook_id, tenant, url, list(events), description, secret, created)

    def get(self, webhook_id: str, tenant: str | None = None) -> Webhook | None:
        if not WEBHOOK_ID.match(webhook_id):
            return None
        h = decoded(self.redis.hgetall(self.keys.webhook(webhook_id)))
        if not h or (tenant is not None and h.get("tenant") != tenant):
            return None
        return Webhook.from_hash(h)

    def list(self, tenant: str) -> list[Webhook]:
        """The tenant's webhooks, newest first (at most max_webhooks_per_tenant of them)."""
        members = self.redis.zrevrange(self.keys.webhooks_by_tenant(tenant), 0, -1)
        ids = [text(i) or "" for i in members]
        pipe = self.redis.pipeline(transaction=False)
        for webhook_id in ids:
            pipe.hgetall(self.keys.webhook(webhook_id))
        return [Webhook.from_hash(decoded(h)) for h in pipe.execute() if h]

    def delete(self, webhook_id: str, tenant: str | None = None) -> bool:
        """The webhook and its deliveries; a delivery in flight is not tried again."""
        if not WEBHOOK_ID.match(webhook_id):
            return False
        return bool(self._run(self._delete, webhook_id, tenant or ""))

    def deliveries(
        self, webhook_id: str, limit: int, after: str | None = None
    ) -> tuple[list[Delivery], bool]:
        """Deliveries newest first, up to ``limit``, older than the delivery ``after``."""
        top = "+inf"
        if after is not None:
            score = self.redis.zscore(self.keys.webhook_deliveries(webhook_id), after)
            if score is None:
                return [], False
            top = f"({score!r}"
        ids = self.redis.zrevrangebyscore(
            self.keys.webhook_deliveries(webhook_id), top, "-inf", start=0, num=limit + 1
        )
        ids = [text(i) or "" for i in ids]
        pipe = self.redis.pipeline(transaction=False)
        for event_id in ids[:limit]:
            pipe.hgetall(self.keys.webhook_delivery(webhook_id, event_id))
        found = [Delivery.from_hash(decoded(h)) for h in pipe.execute() if h]
        return found, len(ids) > limit

    def delivery(self, webhook_id: str, event_id: str) -> Delivery | None:
        h = decoded(self.redis.hgetall(self.keys.webhook_delivery(webhook_id, event_id)))
        return Delivery.from_hash(h) if h else None

    # The dispatcher's side --------------------------------------------------------------

    def ensure_feed_group(self) -> None:
        try:
            self.redis.xgroup_create(self.keys.webhook_feed, FEED_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_feed(
        self, consumer: str, count: int, min_idle_ms: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Feed entries to turn into deliveries: first those another dispatcher read and
        never acknowledged (it died) for ``min_idle_ms``, then new ones."""
        feed = self.keys.webhook_feed
        claimed = self.redis.xautoclaim(
            feed, FEED_GROUP, consumer, min_idle_ms, start_id="0-0", count=count
        )
        entries = [(e[0], e[1]) for e in (claimed[1] if claimed else []) if e and e[1]]
        if not entries:
            reply = self.redis.xreadgroup(FEED_GROUP, consumer, {feed: ">"}, count=count)
            entries = stream_entries(reply)
        return [(text(eid) or "", decoded(dict(fields or {}))) for eid, fields in entries]

    def ack_feed(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            feed = self.keys.webhook_feed
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(feed, FEED_GROUP, *entry_ids)
            pipe.xdel(feed, *entry_ids)
            pipe.execute()

    def add_delivery(
        self, webhook_id: str, event_id: str, kind: str, job_id: str, payload: str, kept: int
    ) -> bool:
        return bool(
            self._run(self._add_delivery, webhook_id, event_id, kind, job_id, payload, kept)
        )

    def claim_due(self, count: int, lease_s: float) -> list[Claimed]:
        reply = self._run(self._claim_due, count, lease_s)
        flat = [text(x) if not isinstance(x, int) else x for x in reply]
        return [
            Claimed(str(flat[i]), str(flat[i + 1]), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    def settle(
        self,
        claimed: Claimed,
        *,
        ok: bool,
        status_code: int | None,
        error: str,
        retry_in_s: float,
        max_attempts: int,
    ) -> str:
        reply = self._run(
            self._settle,
            claimed.webhook_id,
            claimed.event_id,
            claimed.attempt,
            "1" if ok else "0",
            "" if status_code is None else status_code,
            error[:500],
            retry_in_s,
            max_attempts,
        )
        return text(reply) or ""
