"""Celery tasks and worker lifecycle hooks.

Importing this module opens no connection: the Redis client is made on first use in the
worker process, and the maintenance thread starts when the worker is ready."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from functools import lru_cache

import redis
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down

from thaw.cpus import apply_cpu_share
from thaw.dispatch import CHECKPOINT_TASKS, TRAIN_TASK
from thaw.store import connect
from thaw.webhooks.dispatcher import Dispatcher
from worker.celery_app import app, app_settings
from worker.checkpoint_work import run_checkpoint_task
from worker.job_runner import run_job
from worker.maintenance import Maintenance

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
PREEMPT = threading.Event()
"""Set when the worker begins a warm shutdown (SIGTERM): the running job saves a step
checkpoint and goes back to the queue for another worker."""


def enqueue(job_id: str) -> None:
    app.send_task(TRAIN_TASK, args=[job_id], queue=app_settings().queue)


@lru_cache(maxsize=1)
def client() -> redis.Redis:
    return connect(app_settings().redis_url)


@lru_cache(maxsize=1)
def maintenance() -> Maintenance:
    return Maintenance(app_settings(), client(), WORKER_ID, enqueue)


@lru_cache(maxsize=1)
def webhooks() -> Dispatcher:
    return Dispatcher(client(), app_settings(), WORKER_ID)


@app.task(name=TRAIN_TASK, ignore_result=True)
def train(job_id: str) -> str:
    return run_job(job_id, WORKER_ID, app_settings(), client(), enqueue=enqueue, preempt=PREEMPT)


@app.task(name=CHECKPOINT_TASKS["evaluation"], ignore_result=True)
def evaluate(task_id: str) -> str:
    return run_checkpoint_task(task_id, WORKER_ID, app_settings(), client())


@app.task(name=CHECKPOINT_TASKS["prediction"], ignore_result=True)
def predict(task_id: str) -> str:
    return run_checkpoint_task(task_id, WORKER_ID, app_settings(), client())


@app.task(name=CHECKPOINT_TASKS["export"], ignore_result=True)
def export(task_id: str) -> str:
    return run_checkpoint_task(task_id, WORKER_ID, app_settings(), client())


@worker_init.connect
def _size_threads(**_: object) -> None:
    log.info(apply_cpu_share(app_settings().torch_threads).describe())


@worker_ready.connect
def _start_maintenance(**_: object) -> None:
    maintenance().start()
    webhooks().start()


@worker_shutting_down.connect
def _preempt(**_: object) -> None:
    log.warning("shutting down: a running job saves a step checkpoint and is handed over")
    PREEMPT.set()


@worker_shutdown.connect
def _stop_maintenance(**_: object) -> None:
    webhooks().stop()
    maintenance().stop()
