"""Worker liveness: each worker refreshes a heartbeat; /readyz asks who is alive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from thaw.store.codec import dumps, loads, text
from thaw.store.keys import Keys


class WorkerRegistry:
    """A sorted set of worker ids scored by heartbeat expiry (Redis clock), so a liveness
    check never scans the keyspace, plus a per-worker info key with the same TTL."""

    def __init__(self, client: redis.Redis, prefix: str = "thaw"):
        self.redis = client
        self.keys = Keys(prefix)

    def _now(self) -> float:
        seconds, micros = self.redis.time()
        return seconds + micros / 1_000_000

    def record_worker_heartbeat(
        self, worker_id: str, ttl: float, info: Mapping[str, Any] | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        now = self._now()
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.keys.workers, {worker_id: now + ttl})
        pipe.zremrangebyscore(self.keys.workers, "-inf", f"({now}")
        pipe.set(self.keys.worker(worker_id), dumps(dict(info or {})), px=max(1, int(ttl * 1000)))
        pipe.execute()

    def live_workers(self) -> list[str]:
        """Ids of workers whose last heartbeat has not expired, sorted."""
        ids = self.redis.zrangebyscore(self.keys.workers, f"({self._now()}", "+inf")
        return sorted(text(i) or "" for i in ids)

    def live(self) -> list[tuple[str, dict[str, Any]]]:
        """Each live worker's id and the info of its last heartbeat, sorted by id."""
        ids = self.live_workers()
        pipe = self.redis.pipeline(transaction=False)
        for worker_id in ids:
            pipe.get(self.keys.worker(worker_id))
        out = []
        for worker_id, raw in zip(ids, pipe.execute(), strict=True):
            info = text(raw)
            if info is not None:
                out.append((worker_id, loads(info)))
        return out

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker at once (a clean shutdown)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self.keys.workers, worker_id)
        pipe.delete(self.keys.worker(worker_id))
        pipe.execute()
