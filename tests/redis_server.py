"""Tests start the same embedded redis-server that ``thaw up`` runs, and lend its databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

from thaw.store.redis_server import RedisServer, find_redis_server

__all__ = ["RedisDatabases", "RedisServer", "find_redis_server"]

# redis-server's default `databases 16`: 0 is the stack's and redis_client's, the rest are lent.
LENT_DATABASES = range(1, 16)


class RedisDatabases:
    """Lends each API server or stack that needs one a Redis database of its own, empty, and
    takes it back, so no test picks a database number by hand."""

    def __init__(self, url: str) -> None:
        self._parts = urlsplit(url)
        self._free = list(LENT_DATABASES)
        self._lock = threading.Lock()

    @contextmanager
    def lend(self) -> Iterator[str]:
        """The URL of a database nobody else holds, flushed before and after."""
        with self._lock:
            if not self._free:
                raise RuntimeError("every lent Redis database is in use; give one back first")
            db = self._free.pop(0)
        url = urlunsplit(self._parts._replace(path=f"/{db}"))
        _flush(url)
        try:
            yield url
        finally:
            _flush(url)
            with self._lock:
                self._free.append(db)


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
