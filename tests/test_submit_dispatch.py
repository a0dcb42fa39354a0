"""A job whose first dispatch fails stays queued for the sweeper; it is not failed."""

from __future__ import annotations

import time

import redis

from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.store import DatasetStore, JobStatus, JobStore
from thaw.submit import submit_job

SPEC = {
    "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
    "dataset": {"synthetic": {"num_classes": 3, "num_examples": 24}},
    "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
    "hyperparameters": {"epochs": 1, "batch_size": 8},
}


def test_a_failed_dispatch_leaves_the_job_queued_for_the_sweeper(
    redis_client: redis.Redis, tmp_path
) -> None:
    jobs, datasets = JobStore(redis_client), DatasetStore(redis_client)
    sent: list[str] = []

    def broker_down(job_id: str) -> None:
        sent.append(job_id)
        raise ConnectionError("broker unreachable")

    submission = submit_job(
        JobSpec.model_validate(SPEC),
        tenant="default",
        settings=Settings(data_dir=tmp_path),
        jobs=jobs,
        datasets=datasets,
        enqueue=broker_down,
    )
    job = submission.job
    assert submission.created and sent == [job.id]
    assert job.status == JobStatus.QUEUED and job.error is None
    assert jobs.ids_by_status(JobStatus.QUEUED) == [job.id]
    time.sleep(0.05)
    assert jobs.redispatch(job.id, 0.01) is True  # what a sweeper does next
