"""Enqueue training and checkpoint tasks by task name: the API never imports the worker's
modules."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from thaw.dispatch import CHECKPOINT_TASKS, TRAIN_TASK, Enqueue, SendTask

if TYPE_CHECKING:
    from celery import Celery

    from thaw.settings import Settings


@lru_cache(maxsize=4)
def _client(broker_url: str) -> Celery:
    from celery import Celery

    app = Celery("thaw-client", broker=broker_url)
    app.conf.broker_connection_retry_on_startup = True
    return app


def enqueuer(settings: Settings) -> Enqueue:
    """Send a job id to whichever worker listens on the configured queue."""

    def enqueue(job_id: str) -> None:
        _client(settings.redis_url).send_task(TRAIN_TASK, args=[job_id], queue=settings.queue)

    return enqueue


def task_sender(settings: Settings) -> SendTask:
    """Send an evaluation, prediction or export record to the workers' queue; ``expires``
    makes a worker drop a message it receives after that many seconds."""

    def send(kind: str, task_id: str, expires: float | None) -> None:
        _client(settings.redis_url).send_task(
            CHECKPOINT_TASKS[kind], args=[task_id], queue=settings.queue, expires=expires
        )

    return send
