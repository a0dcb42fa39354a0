"""Opening a Redis client the way the stores expect it."""

from __future__ import annotations

from typing import Any

import redis

READ_TIMEOUT_S = 60.0


def connect(url: str, **options: Any) -> redis.Redis:
    """A client with decoded replies and bounded connect and read times.

    redis-py's own read timeout (5 s) is shorter than an SSE keepalive period, during
    which ``EventLog.wait`` blocks; reads here may take up to ``READ_TIMEOUT_S``."""
    settings: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 5.0,
        "socket_timeout": READ_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }
    settings.update(options)
    return redis.Redis.from_url(url, **settings)


def is_reachable(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
