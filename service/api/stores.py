"""The Redis-backed stores the API uses, opened once per app."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from thaw.settings import Settings
from thaw.store import DatasetStore, EventLog, JobStore, WorkerRegistry, connect
from thaw.store.checkpoint_tasks import CheckpointTaskStore


@dataclass
class Stores:
    client: redis.Redis
    jobs: JobStore
    events: EventLog
    datasets: DatasetStore
    workers: WorkerRegistry
    tasks: CheckpointTaskStore

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        client = connect(settings.redis_url, socket_connect_timeout=2.0)
        return cls(
            client=client,
            jobs=JobStore(client),
            events=EventLog(client),
            datasets=DatasetStore(client),
            workers=WorkerRegistry(client),
            tasks=CheckpointTaskStore(client),
        )

    def close(self) -> None:
        self.client.close()
