"""The Redis job store, job event streams, dataset records and worker liveness."""

from thaw.job_status import TERMINAL_STATUSES, JobStatus
from thaw.store.datasets import Dataset, DatasetStore
from thaw.store.errors import (
    DatasetExists,
    IdempotencyConflict,
    InvalidCursor,
    JobNotTerminal,
    StoreError,
)
from thaw.store.events import EVENT_TYPES, Event, EventLog
from thaw.store.job_record import Job, JobError
from thaw.store.jobs import JobStore, body_hash_of
from thaw.store.keys import Keys
from thaw.store.redis_conn import connect, is_reachable
from thaw.store.workers import WorkerRegistry

__all__ = [
    "EVENT_TYPES",
    "TERMINAL_STATUSES",
    "Dataset",
    "DatasetExists",
    "DatasetStore",
    "Event",
    "EventLog",
    "IdempotencyConflict",
    "InvalidCursor",
    "Job",
    "JobError",
    "JobNotTerminal",
    "JobStatus",
    "JobStore",
    "Keys",
    "StoreError",
    "WorkerRegistry",
    "body_hash_of",
    "connect",
    "is_reachable",
]
