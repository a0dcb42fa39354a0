"""The one place fixtures are registered: Redis for the session, and the fixture modules."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_server import RedisDatabases, RedisServer

pytest.register_assert_rewrite("support")

pytest_plugins = (
    "api_fixtures",
    "worker_fixtures",
    "live_stack",
    "browser_fixtures",
    "seaweedfs",
)


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


@pytest.fixture(scope="session")
def redis_databases(redis_url: str) -> RedisDatabases:
    return RedisDatabases(redis_url)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A decoded-replies client on an empty database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def module_tmp_path(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """Scratch for one module's shared fixtures, removed once the module's tests are done
    (``tmp_path_factory`` alone would keep it until the session ends)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)
