"""The session's Redis databases are lent one holder at a time, empty, and emptied when back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import redis
from redis_server import LENT_DATABASES, RedisDatabases, RedisServer


@pytest.fixture
def own_redis() -> Iterator[str]:
    """A redis-server of its own, so lending every database takes none from the session."""
    with RedisServer() as server:
        yield server.url


def _db(url: str) -> int:
    return int(url.rsplit("/", 1)[1])


def _size(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return client.dbsize()
    finally:
        client.close()


def test_each_holder_gets_its_own_empty_database_and_leaves_it_empty(own_redis: str) -> None:
    databases = RedisDatabases(own_redis)
    with databases.lend() as first, databases.lend() as second:
        assert _db(first) != _db(second) and 0 not in (_db(first), _db(second))
        assert _size(first) == 0
        with redis.Redis.from_url(first) as client:
            client.set("left", "behind")
    with ExitStack() as held:
        urls = [held.enter_context(databases.lend()) for _ in LENT_DATABASES]
        assert first in urls
        assert [_size(url) for url in urls] == [0] * len(urls)


def test_lending_past_the_last_database_is_refused(own_redis: str) -> None:
    databases = RedisDatabases(own_redis)
    with ExitStack() as held:
        urls = [held.enter_context(databases.lend()) for _ in LENT_DATABASES]
        assert sorted(map(_db, urls)) == list(LENT_DATABASES)
        with pytest.raises(RuntimeError, match="every lent Redis database is in use"):
            held.enter_context(databases.lend())
