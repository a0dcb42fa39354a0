"""Bearer API keys per tenant (``THAW_API_KEYS="tenantA:key1,tenantB:key2"``)."""

from __future__ import annotations

import hmac
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
