"""Bearer API keys: tenants (``THAW_API_KEYS="tenantA:key1,tenantB:key2"``) and admins
(``THAW_ADMIN_KEYS="key3"``), who read cluster-wide figures but own no jobs."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Caller:
    """Who sent a valid key: a tenant, or an admin (``tenant`` None)."""

    tenant: str | None
    admin: bool = False


ALL_SEEING = Caller(DEFAULT_TENANT, admin=True)
"""The caller of a server without keys (loopback only): one tenant that sees everything."""


@dataclass(frozen=True)
class ApiKeys:
    """Callers by key; no keys at all means the server runs without authentication."""

    pairs: tuple[tuple[str, bytes], ...]
    admin: tuple[bytes, ...] = ()

    @classmethod
    def parse(cls, raw: str, admin_raw: str = "") -> ApiKeys:
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
        admin = tuple(key.strip().encode() for key in admin_raw.split(",") if key.strip())
        return cls(tuple(pairs), admin)

    @property
    def enabled(self) -> bool:
        return bool(self.pairs or self.admin)

    def caller_for(self, key: str) -> Caller | None:
        """The key's caller; every stored key is compared, in constant time each."""
        given = key.encode()
        found: Caller | None = None
        for tenant, stored in self.pairs:
            if hmac.compare_digest(given, stored) and found is None:
                found = Caller(tenant)
        for stored in self.admin:
            if hmac.compare_digest(given, stored) and found is None:
                found = Caller(None, admin=True)
        return found
