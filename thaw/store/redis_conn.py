"""Opening a Redis client the way the stores expect it."""

from __future__ import annotations

from typing import Any

import redis


def connect(url: str, **options: Any) -> redis.Redis:
    """A client with decoded replies and a bounded connect time.

    No read timeout by default, so ``EventLog.wait`` may block as long as it asks;
    a ``socket_timeout`` passed here must exceed the longest wait."""
    settings: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 5.0,
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
