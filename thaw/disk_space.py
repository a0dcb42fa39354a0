"""Free-disk checks before large writes (checkpoints, cache spills): a clear storage_full
error instead of a raw "No space left on device" or a memory-mapped file that faults."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from thaw.errors import ThawError


class StorageFull(ThawError):
    """Not enough free disk for a write the run needs; nothing half-written stays visible."""

    status = 507
    code = "storage_full"

    def __init__(self, folder: Path, what: str, needed: int, free: int, reserve: int):
        self.folder = folder
        self.needed = needed
        self.free = free
        have = f"{free} bytes are free" if free >= 0 else "the disk is full"
        kept = f", {reserve} of them kept free by THAW_DISK_RESERVE_BYTES" if reserve else ""
        wants = f"needs {needed} bytes" if needed else "ran out of disk"
        super().__init__(
            f"{what} {wants} in {folder} and {have}{kept}; free space in the data dir "
            "(THAW_DATA_DIR) or lower what the job stores"
        )


def disk_full(folder: Path, what: str, exc: OSError, reserve: int = 0) -> StorageFull:
    """StorageFull for a write that failed with ENOSPC/EDQUOT, with what is free now."""
    try:
        free = shutil.disk_usage(existing_parent(folder)).free
    except OSError:
        free = -1
    error = StorageFull(folder, what, 0, free, reserve)
    error.__cause__ = exc
    return error


def existing_parent(folder: Path) -> Path:
    """``folder`` or its nearest existing parent (what shutil.disk_usage can measure)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_free(folder: str | Path, needed: int, reserve: int = 0, what: str = "a write") -> None:
    """Raise StorageFull unless ``needed`` bytes fit in ``folder`` with ``reserve`` left over."""
    folder = Path(folder)
    free = shutil.disk_usage(existing_parent(folder)).free
    if free - needed < reserve:
        raise StorageFull(folder, what, needed, free, reserve)


def is_disk_full(exc: BaseException) -> bool:
    """An OSError that says the disk (or the quota) ran out."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
