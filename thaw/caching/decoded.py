"""Decoded-input cache: each image decoded and resized once per job into uint8 pixels.

An image dataset decodes a sample the first time it is read (by the feature cache's fill,
or in the first epoch by the normal data pipeline, in whichever DataLoader worker reads it)
and keeps its pixels; later reads get them back and apply augmentation on top. Pixels live
in anonymous shared memory up to THAW_DECODED_CACHE_BYTES and in a memory-mapped file in
the run folder beyond that, so forked DataLoader workers fill and read the same buffer.
The file goes when the dataset does.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thaw.disk_space import require_free

DECODED_FOLDER = "decoded_cache"


class DecodedImages:
    """uint8 pixels ``[n, 3, size, size]`` with a filled flag per sample."""

    def __init__(self, n: int, size: int, *, budget: int, spill: Path, disk_reserve: int = 0):
        self.shape = (n, 3, size, size)
        self.nbytes = n * 3 * size * size
        self.file: Path | None = None
        if self.nbytes <= budget:
            buffer: Any = mmap.mmap(-1, max(self.nbytes, 1))
        else:
            require_free(spill.parent, self.nbytes, disk_reserve, "the decoded-input cache")
            spill.parent.mkdir(parents=True, exist_ok=True)
            self.file = spill
            buffer = np.memmap(spill, dtype=np.uint8, mode="w+", shape=(max(self.nbytes, 1),))
            weakref.finalize(self, _remove, spill, os.getpid())
        self._buffer = buffer
        self._flags = mmap.mmap(-1, max(n, 1))
        self.pixels = torch.from_numpy(
            np.frombuffer(buffer, dtype=np.uint8, count=self.nbytes).reshape(self.shape)
        )
        self.filled = torch.from_numpy(np.frombuffer(self._flags, dtype=np.uint8, count=n))

    @property
    def complete(self) -> bool:
        """Whether every sample is decoded (in this process or a forked loader worker)."""
        return bool(self.filled.all())

    @property
    def where(self) -> str:
        return "memory" if self.file is None else f"memory-mapped file {self.file.name}"

    def get(self, index: int, decode: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The sample's pixels, decoded by ``decode`` the first time only."""
        if not self.filled[index]:
            self.pixels[index] = decode()
            self.filled[index] = 1
        return self.pixels[index]


def _remove(path: Path, owner: int) -> None:
    if os.getpid() == owner:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()
