"""Names that archive tools and desktops add next to real data, skipped everywhere."""

from __future__ import annotations

from collections.abc import Iterable

_JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


def is_junk_name(name: str) -> bool:
    return name.startswith(".") or name in _JUNK_NAMES


def is_junk_path(parts: Iterable[str]) -> bool:
    return any(is_junk_name(p) for p in parts)
