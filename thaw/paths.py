"""Resolve user-given relative paths under an allowed root, refusing escapes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from thaw.errors import SpecError

MAX_PATH_CHARS = 1024


def path_under(root: Path, relative: str, loc: Sequence[str | int], what: str) -> Path:
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
    if not is_inside(target, base):
        raise SpecError(
            loc, f"{what} {relative!r} leaves its root folder", "remove links out of it"
        )
    return target


def is_inside(path: Path, root: Path) -> bool:
    """Whether the resolved ``path`` is ``root`` or below it (both already resolved)."""
    return path == root or root in path.parents


def containing_root(path: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]]) -> Path:
    """The first of ``roots`` (resolved) that holds ``path`` (links resolved); ``path``
    itself when none does, so what it holds must stay inside it."""
    target = Path(path).resolve()
    for root in roots:
        base = Path(root).resolve()
        if is_inside(target, base):
            return base
    return target
