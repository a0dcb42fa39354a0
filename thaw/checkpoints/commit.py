"""The fenced commit of a run folder: stage the files, then one conditional publish.

What makes a checkpoint visible is ``index.json`` (with the folders it lists and the
``best``/``last`` links). Each holder of a run first raises the run's fence to its claim's
fencing token (:func:`raise_fence`; ``index.json`` carries it). A publish, under the run's
commit lock, compares its token with that fence and confirms its claim with the job store,
and only then moves the staged folders into place and writes the new index. So a holder
that stalled anywhere before (after an earlier lease check, mid-write) makes nothing
visible once a newer claim exists: its staged folders are removed unseen. A new holder
raises the fence under the same lock, so a publish it did not refuse is one it reads. An object
store implements the same contract with a conditional write of ``index.json`` (If-Match
on the version it read).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from thaw.atomic import fsync_dir, remove_tree, replace_dir
from thaw.checkpoints.errors import FencedOut
from thaw.checkpoints.index import Index, choose_best, read_index, write_index
from thaw.checkpoints.layout import BEST, LAST, checkpoints_dir

Update = Callable[[Index], Index]


@contextlib.contextmanager
def commit_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run's commit lock (a flock on its checkpoints folder); yields that folder.
    The kernel drops the lock with the process, so a killed holder never leaves it held."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield root
    finally:
        os.close(fd)


def check_fence(run_dir: str | Path, index: Index, token: int | None) -> None:
    """Raise FencedOut when a claim newer than ``token`` raised the run's fence.
    ``token`` None (``thaw train``, no job store) is not fenced."""
    if token is not None and index.token is not None and index.token > token:
        raise FencedOut(
            f"claim {token} no longer holds {run_dir}: claim {index.token} does",
            "this writer stops without another write",
        )


def raise_fence(run_dir: str | Path, token: int | None) -> None:
    """Claim the run folder for ``token`` before reading its resume point: from now on no
    older claim publishes. FencedOut if a newer claim already did."""
    if token is None:
        return
    with commit_lock(run_dir):
        index = read_index(run_dir)
        check_fence(run_dir, index, token)
        if index.token != token:
            write_index(run_dir, replace(index, token=token))


def publish(
    run_dir: str | Path,
    token: int | None,
    staged: Mapping[Path, Path],
    update: Update | None = None,
    confirm: Callable[[], object] | None = None,
) -> Index:
    """Make staged folders visible: under the commit lock, only while ``token`` holds the
    fence and ``confirm()`` (the job store's lease check; it raises when the claim is
    gone) passes, put each staged folder (value) at its final path (key), write
    ``update(index)`` (the fence kept) and point the aliases at it, then remove the
    checkpoint folders the new index no longer lists. On FencedOut or any failure the
    staged folders are removed and what was visible stays as it was."""
    try:
        with commit_lock(run_dir) as root:
            before = read_index(run_dir)
            check_fence(run_dir, before, token)
            if confirm is not None:
                confirm()
            fence = max((t for t in (before.token, token) if t is not None), default=None)
            index = before
            replaced = [final.name for final in staged if before.get(final.name) is not None]
            if replaced:
                # Unlist what is replaced first, so no crash leaves it listed but gone.
                kept = [e for e in before.entries if e.name not in replaced]
                index = replace(
                    before,
                    entries=kept,
                    best=choose_best(kept, before.monitor, before.mode),
                    last=kept[-1].name if kept else None,
                )
                write_index(run_dir, index)
                link_aliases(run_dir, index)
            for final, tmp in staged.items():
                replace_dir(tmp, final)
            after = replace(update(index) if update else index, token=fence)
            if after != before:
                write_index(run_dir, after)
                link_aliases(run_dir, after)
            listed = set(after.names())
            for entry in index.entries:
                if entry.name not in listed:
                    remove_tree(root / entry.name)
            fsync_dir(root)
            return after
    except BaseException:
        for tmp in staged.values():
            remove_tree(tmp)
        raise


def link_aliases(run_dir: str | Path, index: Index) -> None:
    """Point ``best`` and ``last`` at their folders with relative links, each replaced in one
    rename so a reader never finds one missing; an alias with no target is removed."""
    root = checkpoints_dir(run_dir)
    for alias, target in ((BEST, index.best), (LAST, index.last)):
        link = root / alias
        if target is None:
            if link.is_symlink():
                link.unlink()
            continue
        if link.is_symlink() and os.readlink(link) == target:
            continue
        tmp = root / f".{alias}.tmp-{secrets.token_hex(6)}"
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, link)
    fsync_dir(root)
