"""Single byte ranges (RFC 9110 section 14) for checkpoint downloads."""

from __future__ import annotations

import re

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.ASCII)
# More digits than this (after leading zeros) is past any file this server holds.
_DIGITS_MAX = 18


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int):
        self.size = size
        super().__init__(f"range not satisfiable for {size} bytes")


def _number(digits: str, ceiling: int) -> int:
    """``int(digits)``, at most ``ceiling``, without converting a number of any length."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > _DIGITS_MAX:
        return ceiling
    return min(int(digits), ceiling)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive, or ``None`` to send the whole file (no header, several
    ranges, or a header that is not a byte range); raises RangeNotSatisfiable."""
    if not header:
        return None
    match = _SPEC.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = _number(last, size)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return size - suffix, size - 1
    start = _number(first, size)
    end = _number(last, size) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size - 1)
