"""Tests start the same embedded redis-server that ``thaw up`` runs."""

from thaw.store.redis_server import RedisServer, find_redis_server

__all__ = ["RedisServer", "find_redis_server"]
