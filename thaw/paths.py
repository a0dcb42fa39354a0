"""Resolve user-given relative paths under an allowed root, refusing escapes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from thaw.errors import SpecError

MAX_PATH_CHARS = 1024


def resolve_under(root: Path, relative: str, loc: Sequence[str | int], what: str) -> Path:
    """``root/relative`` if it stays inside ``root`` (links resolved), else a SpecError."""
    if "\x00" in relative:
        raise SpecError(loc, f"{what} contains a NUL byte", "remove it from the path")
    if len(relative) > MAX_PATH_CHARS:
        raise SpecError(
            loc,
            f"{what} is {len(relative)} characters long; at most {MAX_PATH_CHARS}",
            "give a shorter path",
        )
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (relative[1:3] == ":\\"):
        raise SpecError(
            loc,
            f"{what} must be a relative path inside its root, got {relative!r}",
            "give a path relative to the server's root folder, without '..'",
        )
    base = root.resolve()
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise SpecError(
            loc, f"{what} {relative!r} leaves its root folder", "remove links out of it"
        )
    return target
