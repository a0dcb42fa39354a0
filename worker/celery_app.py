"""The Celery app of the training workers.

Choices, each for a known failure:
- Acknowledge on receipt (``task_acks_late=False``). With late acks, Redis's
  ``visibility_timeout`` re-delivers a task that runs longer than it, and a
  several-hour job would start again while it still runs. Here the job store's
  claim (compare-and-set) and heartbeat lease decide who trains a job; a killed
  worker's lease expires and a live worker's sweeper re-queues the job, which then
  resumes from its last checkpoint.
- The ``threads`` pool, one thread. Prefork children are daemonic, so DataLoader
  workers cannot start inside them, and a forked child must not inherit a CUDA
  context; ``solo`` blocks remote control. One task thread in the worker's main
  process avoids all three.
- No prefetch beyond the running job (``worker_disable_prefetch``), so a queued
  job waits for the next idle worker instead of behind a busy one.
- Task events on, for Flower (the ``monitoring`` compose profile).

Every worker option is here; ``thaw worker`` passes only the node name. The options that
depend on settings (broker, queue) are set by ``configure``, which the process's entry
point calls with its settings before it uses the app; importing reads no settings.
"""

from __future__ import annotations

from celery import Celery

from thaw.dispatch import TRAIN_TASK
from thaw.settings import Settings
from worker import registration

app = Celery("thaw", include=["worker.tasks"])
app.conf.update(
    task_acks_late=False,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    worker_disable_prefetch=True,
    worker_concurrency=1,
    worker_pool="threads",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=True,
)


def configure(settings: Settings) -> Celery:
    """The app pointed at these settings' broker and queue; the tasks read them back
    through ``app_settings``."""
    app.conf.update(
        broker_url=settings.redis_url,
        task_default_queue=settings.queue,
        task_routes={TRAIN_TASK: {"queue": settings.queue}},
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout},
        thaw_settings=settings,
    )
    return app


def app_settings() -> Settings:
    """The settings ``configure`` was given."""
    settings = app.conf.get("thaw_settings")
    if settings is None:
        raise RuntimeError("the Celery app is not configured; call configure(settings) first")
    return settings


# The two worker options Celery reads only as arguments, not from app.conf: mingle
# (a start-up exchange with every other node) and gossip (every node's events) cost a
# delay and traffic per node and nothing here uses them.
_NODE_OPTIONS = {"without_mingle": True, "without_gossip": True}


def start_worker(hostname: str, settings: Settings, loglevel: str = "INFO") -> int:
    """Run one Celery worker node in this process until it shuts down; its exit code."""
    configure(settings)
    registration.node.name = hostname
    node = app.Worker(hostname=hostname, loglevel=loglevel, **_NODE_OPTIONS)
    node.start()
    return int(node.exitcode or 0)
