"""Tests start the same embedded redis-server that ``thaw up`` runs."""

from thaw.embedded_redis import RedisServer, find_redis_server

__all__ = ["RedisServer", "find_redis_server"]
