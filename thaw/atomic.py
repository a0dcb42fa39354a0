"""Crash-safe file and folder writes: temp name, fsync, rename, fsync the folder; and the
file lock that lets one writer at a time on a host through."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on the file ``path`` (created, with its folder, if missing)
    for the block. The kernel drops it with the process, so a killed holder never leaves
    it held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Persist a folder's entries (renames, creations, deletions) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name next to ``path``, in the same folder (so rename is atomic)."""
    return path.with_name(f".{path.name}.{kind}-{secrets.token_hex(6)}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it is synced and renamed onto ``path``.

    On error the temp file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    tmp = temp_sibling(target)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write strict JSON (no NaN or Infinity) atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_tree(path: Path) -> None:
    """Remove a folder (or a stray file) if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` at ``final``, moving aside and removing whatever
    was there; a reader sees the old folder or the new one, never a half-written one."""
    if final.exists() or final.is_symlink():
        old = final.parent / f".{final.name}.old-{secrets.token_hex(6)}"
        os.replace(final, old)
        remove_tree(old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
