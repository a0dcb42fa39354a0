"""``thaw worker``, registered into the ``thaw`` command by entry point."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="run a training worker")
    worker.add_argument("--hostname", default=None, help="Celery node name")
    worker.set_defaults(run=_worker)


def _worker(args: argparse.Namespace) -> int:
    from worker.celery_app import app, settings, worker_argv

    app.worker_main(worker_argv(settings.queue, args.hostname))
    return 0
