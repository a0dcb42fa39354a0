"""Errors the stores raise on purpose."""

from __future__ import annotations

from typing import Any

from thaw.errors import ThawError


class StoreError(ThawError):
    """Base of the job and dataset store errors."""

    status = 500
    code = "store_error"

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class IdempotencyConflict(StoreError):
    """An Idempotency-Key reused with a different request body."""

    status = 422
    code = "idempotency_conflict"

    def __init__(self, key: str, job_id: str):
        self.key = key
        self.job_id = job_id
        super().__init__(
            f"Idempotency-Key {key!r} was already used for job {job_id} with a different "
            "request body; send the same body or use a new key"
        )

    def problem_fields(self) -> dict[str, Any]:
        return {"job_id": self.job_id}


class JobNotTerminal(StoreError):
    """Deleting a job that is still queued or running."""

    status = 409
    code = "job_not_terminal"

    def __init__(self, job_id: str, status: str):
        self.job_id = job_id
        self.job_status = status
        super().__init__(f"job {job_id} is {status}; cancel it and wait until it stops first")

    def problem_fields(self) -> dict[str, Any]:
        return {"job_status": self.job_status}


class DatasetExists(StoreError):
    """Creating a dataset record under an id that is taken."""

    status = 409
    code = "dataset_exists"

    def __init__(self, dataset_id: str):
        self.dataset_id = dataset_id
        super().__init__(f"dataset {dataset_id} already exists")


class InvalidCursor(StoreError):
    """An ``after`` cursor that is not an id this store hands out."""

    status = 422
    code = "invalid_cursor"

    def __init__(self, cursor: str, expected: str):
        self.cursor = cursor
        super().__init__(f"invalid cursor {cursor!r}: expected {expected}")
