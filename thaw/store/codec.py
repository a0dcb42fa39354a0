"""Converting Redis replies (bytes or str) and timestamps to Python values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    """``[k1, v1, k2, v2]`` (an HGETALL reply from Lua) as a dict."""
    items = [text(v) or "" for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


def decoded(mapping: dict[Any, Any]) -> dict[str, str]:
    return {text(k) or "": text(v) or "" for k, v in mapping.items()}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(raw: str | None, default: Any = None) -> Any:
    if raw is None or raw == "":
        return default
    return json.loads(raw)


def number(raw: str | None) -> float | None:
    return float(raw) if raw else None


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds: ``2025-01-02T03:04:05.678Z``."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
