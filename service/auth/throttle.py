"""Invalid API keys limited per client address and per key prefix, counted in Redis so
every API process agrees. A valid key is never refused: it is compared first, and only
invalid ones are counted or throttled."""

from __future__ import annotations

import hashlib
import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from thaw.settings import Settings

KEY_PREFIX_CHARS = 8
"""Invalid keys sharing their first characters count together, from any address."""


class FailureThrottle:
    """A moving window of ``auth_failures_max`` invalid keys per address and per prefix."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.item = RateLimitItemPerSecond(
            settings.auth_failures_max, max(1, math.ceil(settings.auth_failure_window_seconds))
        )
        storage = RedisStorage(settings.redis_url, key_prefix="thaw:auth-failures")
        self.limiter = MovingWindowRateLimiter(storage)

    def failed(self, address: str, key: str) -> int | None:
        """Count an invalid ``key`` from ``address``; the seconds to wait when the address
        or the key's prefix is over the limit (before this one counted), else None."""
        scopes = (("address", address), ("prefix", _prefix_digest(key)))
        waits = [self._wait(scope) for scope in scopes]
        if any(wait is not None for wait in waits):
            return max(wait for wait in waits if wait is not None)
        for scope in scopes:
            self.limiter.hit(self.item, *scope)
        return None

    def _wait(self, scope: tuple[str, str]) -> int | None:
        if self.limiter.test(self.item, *scope):
            return None
        reset = self.limiter.get_window_stats(self.item, *scope).reset_time
        return max(1, math.ceil(reset - time.time()))


def _prefix_digest(key: str) -> str:
    return hashlib.sha256(key[:KEY_PREFIX_CHARS].encode()).hexdigest()[:32]
