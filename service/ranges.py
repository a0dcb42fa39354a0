"""Single byte ranges (RFC 9110 section 14) for checkpoint downloads."""

from __future__ import annotations

import re

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.ASCII)


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int):
        self.size = size
        super().__init__(f"range not satisfiable for {size} bytes")


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
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size - 1)
