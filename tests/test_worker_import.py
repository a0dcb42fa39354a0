"""Importing the worker's modules opens no connection: the Redis client is made when the
worker runs, not when its modules load (tools and tests import them freely)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import redis, sys
import worker.tasks, worker.job_runner, worker.maintenance, worker.celery_app
probe = redis.Redis.from_url(sys.argv[1])
print(len(probe.client_list()))
"""


def test_importing_worker_modules_opens_no_redis_connection() -> None:
    # A server of its own: connections other tests leave to the shared one come and go.
    with RedisServer() as server:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "THAW_REDIS_URL": server.url}
        out = subprocess.run(
            [sys.executable, "-c", PROBE, server.url], env=env, capture_output=True, text=True
        )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == 1  # the probe's own connection only
