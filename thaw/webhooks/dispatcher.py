"""The webhook dispatcher: turns feed entries into deliveries and tries due deliveries.

Every worker process runs one in a thread of its own (``Dispatcher.start``), beside its
sweeper and apart from the training thread, so a slow or dead receiver never delays a
step. All its state is in Redis: a dispatcher that dies mid-try leaves its feed entries
to another one (consumer group, claimed after ``webhook_lease_seconds``) and its
delivery to another one after the same lease, with the same ``webhook-id``.
``python -m thaw.webhooks.dispatcher`` runs one alone, in the foreground."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid

import redis

from thaw.settings import Settings, get_settings
from thaw.store import JobStore, connect
from thaw.store.checkpoint_tasks import CheckpointTaskStore
from thaw.webhooks.events import (
    event_id,
    event_type,
    payload,
    task_event_id,
    task_event_type,
    task_payload,
)
from thaw.webhooks.sender import send
from thaw.webhooks.store import Claimed, Webhook, WebhookStore

log = logging.getLogger(__name__)

FEED_BATCH = 50
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class Dispatcher:
    def __init__(self, client: redis.Redis, settings: Settings, name: str | None = None):
        self.settings = settings
        self.store = WebhookStore(client)
        self.jobs = JobStore(client)
        self.tasks = CheckpointTaskStore(client)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._group_ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fan_out(self) -> int:
        """Turn the feed's entries into deliveries; returns how many entries were read."""
        if not self._group_ready:
            self.store.ensure_feed_group()
            self._group_ready = True
        lease_ms = int(self.settings.webhook_lease_seconds * 1000)
        entries = self.store.read_feed(self.name, FEED_BATCH, lease_ms)
        for entry_id, fields in entries:
            if "task" in fields:
                self._task_deliveries(entry_id, fields)
            else:
                self._job_deliveries(fields)
        self.store.ack_feed([entry_id for entry_id, _ in entries])
        return len(entries)

    def _hooks(self, tenant: str, kind: str, event_ms: int) -> list[Webhook]:
        """The tenant's webhooks that take ``kind`` and existed when the event happened
        (both times from the Redis clock; a stream id has whole milliseconds)."""
        return [
            h
            for h in self.store.list(tenant)
            if kind in h.events and int(h.created_ts * 1000) <= event_ms
        ]

    def _job_deliveries(self, fields: dict[str, str]) -> None:
        job_id, tenant, stream_id = fields.get("job", ""), fields.get("tenant", ""), fields["event"]
        data = json.loads(fields.get("data") or "{}")
        kind = event_type(data)
        if kind is None:
            return
        hooks = self._hooks(tenant, kind, int(stream_id.split("-", 1)[0]))
        if hooks:
            body = payload(kind, stream_id, job_id, data, self.jobs.get(job_id))
            self._add(hooks, event_id(job_id, stream_id), kind, job_id, body)

    def _task_deliveries(self, entry_id: str, fields: dict[str, str]) -> None:
        task_id, job_id = fields["task"], fields.get("job", "")
        kind = task_event_type(fields.get("kind", ""), json.loads(fields.get("data") or "{}"))
        if kind is None:
            return
        hooks = self._hooks(fields.get("tenant", ""), kind, int(entry_id.split("-", 1)[0]))
        if hooks:
            body = task_payload(kind, entry_id, self.tasks.get(task_id), task_id)
            self._add(hooks, task_event_id(task_id, entry_id), kind, job_id, body)

    def _add(self, hooks: list[Webhook], event: str, kind: str, job_id: str, body: str) -> None:
        for hook in hooks:
            self.store.add_delivery(
                hook.id, event, kind, job_id, body, self.settings.webhook_deliveries_kept
            )

    def deliver_due(self) -> int:
        """Try every delivery that is due, one at a time; returns how many were tried."""
        tried = 0
        while not self._stop.is_set():
            claimed = self.store.claim_due(1, self.settings.webhook_lease_seconds)
            if not claimed:
                return tried
            self._try(claimed[0])
            tried += 1
        return tried

    def _try(self, claimed: Claimed) -> None:
        s = self.settings
        hook = self.store.get(claimed.webhook_id)
        delivery = self.store.delivery(claimed.webhook_id, claimed.event_id)
        if hook is None or delivery is None:
            return
        outcome = send(
            hook.url,
            hook.secret,
            delivery.id,
            delivery.payload,
            timeout_s=s.webhook_timeout_seconds,
            allow_private=s.webhooks_allow_private,
        )
        retry_in = min(
            s.webhook_backoff_seconds * 2 ** (claimed.attempt - 1), s.webhook_backoff_max_seconds
        )
        result = self.store.settle(
            claimed,
            ok=outcome.ok,
            status_code=outcome.status_code,
            error=outcome.error,
            retry_in_s=retry_in,
            max_attempts=s.webhook_max_attempts,
        )
        log.info("webhook %s %s try %d: %s", hook.id, delivery.id, claimed.attempt, result)

    def tick(self) -> None:
        self.fan_out()
        self.deliver_due()

    def run(self) -> None:
        """Tick until ``stop``; an unreachable Redis skips a tick, never ends the loop."""
        while True:
            try:
                self.tick()
            except OUTAGE_ERRORS as exc:
                log.warning("webhook dispatcher skipped a tick: Redis unreachable (%s)", exc)
            except Exception:
                log.exception("webhook dispatcher tick failed")
            if self._stop.wait(self.settings.webhook_poll_seconds):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="thaw-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    Dispatcher(connect(settings.redis_url), settings).run()


if __name__ == "__main__":
    main()
