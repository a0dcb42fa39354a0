"""Bearer API keys per tenant (``THAW_API_KEYS="tenantA:key1,tenantB:key2"``)."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class ApiKeys:
    """Tenants by key; empty means the server runs without authentication."""

    pairs: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, raw: str) -> ApiKeys:
        pairs: list[tuple[str, bytes]] = []
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            tenant, sep, key = item.partition(":")
            tenant, key = tenant.strip(), key.strip()
            if not sep or not tenant or not key:
                raise ValueError(
                    "THAW_API_KEYS must be comma-separated tenant:key pairs, "
                    f"got an entry without tenant or key ({tenant or '?'}:...)"
                )
            pairs.append((tenant, key.encode()))
        return cls(tuple(pairs))

    @property
    def enabled(self) -> bool:
        return bool(self.pairs)

    def tenant_for(self, key: str) -> str | None:
        """The key's tenant; every stored key is compared, in constant time each."""
        given = key.encode()
        found: str | None = None
        for tenant, stored in self.pairs:
            if hmac.compare_digest(given, stored) and found is None:
                found = tenant
        return found


class FailureThrottle:
    """Failed API keys per client address in a sliding window; at ``max_failures`` the
    address waits until the oldest failure leaves the window. Holds at most
    ``max_clients`` addresses (the least recently failing are forgotten first)."""

    def __init__(self, max_failures: int, window_s: float, max_clients: int = 10_000):
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> int | None:
        """Seconds the address must wait, or ``None`` when it may try a key."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return None
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if not times:
                del self._failures[client]
                return None
            if len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[0] + self.window_s - now))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.pop(client, None) or deque(maxlen=self.max_failures)
            times.append(now)
            self._failures[client] = times
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
