"""Celery tasks and worker lifecycle hooks."""

from __future__ import annotations

import os
import socket
import uuid

from celery.signals import worker_ready, worker_shutdown

from thaw.dispatch import TRAIN_TASK
from thaw.store import connect
from worker.celery_app import app, settings
from worker.job_runner import run_job
from worker.maintenance import Maintenance

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
_client = connect(settings.redis_url)
_maintenance = Maintenance(
    settings,
    _client,
    WORKER_ID,
    lambda job_id: app.send_task(TRAIN_TASK, args=[job_id], queue=settings.queue),
)


@app.task(name=TRAIN_TASK, ignore_result=True)
def train(job_id: str) -> str:
    return run_job(job_id, WORKER_ID, settings, _client)


@worker_ready.connect
def _start_maintenance(**_: object) -> None:
    _maintenance.start()


@worker_shutdown.connect
def _stop_maintenance(**_: object) -> None:
    _maintenance.stop()
