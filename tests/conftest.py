from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from redis_server import RedisServer
from seaweedfs import s3_env, seaweedfs
from worker_fixtures import stack

__all__ = ["s3_env", "seaweedfs", "stack"]

pytest.register_assert_rewrite("api_fixtures")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the session: ``THAW_TEST_REDIS_URL`` when set (it gets flushed),
    otherwise a redis-server started in a temp dir."""
    external = os.environ.get("THAW_TEST_REDIS_URL")
    if external:
        yield external
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A decoded-replies client on an empty database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()
