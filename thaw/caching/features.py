"""The feature store: a frozen prefix's output per sample, on the GPU, in host memory or in
a memory-mapped file; and the batch the trainer reads from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thaw.disk_space import require_free

_NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}
_CPU = torch.device("cpu")


class FeatureStore:
    """Features of ``n`` samples of one shape; ``lengths`` for text (valid tokens).

    On ``device`` (a GPU) when they fit ``gpu_budget``; else in host memory up to
    ``budget`` (pinned for a GPU run, so batches copy over asynchronously); else in a
    memory-mapped file at ``spill``.
    """

    def __init__(
        self,
        n: int,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        budget: int,
        spill: Path,
        disk_reserve: int = 0,
        *,
        device: torch.device = _CPU,
        gpu_budget: int = 0,
    ):
        self.nbytes = n * math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        self.file: Path | None = None
        self.device = _CPU
        self.pinned = False
        if device.type == "cuda" and self.nbytes <= gpu_budget:
            self.device = device
            self.data = torch.zeros((n, *shape), dtype=dtype, device=device)
        elif self.nbytes <= budget:
            self.pinned = device.type == "cuda"
            self.data = torch.zeros((n, *shape), dtype=dtype, pin_memory=self.pinned)
        else:
            require_free(spill.parent, self.nbytes, disk_reserve, "the feature cache's spill file")
            spill.parent.mkdir(parents=True, exist_ok=True)
            self.file = spill
            raw = np.memmap(spill, dtype=_NUMPY[dtype], mode="w+", shape=(n, *shape))
            self.data = torch.from_numpy(raw).view(dtype)
        self.lengths = torch.zeros(n, dtype=torch.long)
        self.labels = torch.zeros(n, dtype=torch.long)

    @property
    def where(self) -> str:
        if self.file is not None:
            return f"memory-mapped file {self.file.name}"
        if self.device.type == "cuda":
            return "GPU memory"
        return "pinned memory" if self.pinned else "memory"

    def put(
        self,
        indices: torch.Tensor,
        feats: torch.Tensor,
        mask: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> None:
        feats = feats.detach().to(self.device)
        self.labels[indices] = labels.to("cpu")
        rows = indices.to(self.device)
        if mask is None:
            self.data[rows] = feats.contiguous().to(self.data.dtype)
        else:
            width = feats.shape[1]
            self.data[rows, :width] = feats.to(self.data.dtype)
            self.lengths[indices] = mask.sum(dim=1).to("cpu")

    def get(self, indices: torch.Tensor, text: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = indices.to(self.device)
        if not text:
            return self._rows(rows), None
        lengths = self.lengths[indices]
        width = int(lengths.max())
        mask = (torch.arange(width) < lengths[:, None]).long()
        return self.data[rows, :width], mask

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        if not self.pinned:
            return self.data[rows]
        out = torch.empty((len(rows), *self.data.shape[1:]), dtype=self.data.dtype, pin_memory=True)
        return torch.index_select(self.data, 0, rows, out=out)


@dataclass
class CachedBatch:
    """A batch read from the feature store: the prefix's output (and for text its mask)."""

    indices: torch.Tensor
    features: torch.Tensor
    mask: torch.Tensor | None = None

    def to(self, device: torch.device, memory_format: torch.memory_format) -> CachedBatch:
        feats = self.features
        if feats.dim() == 4:
            feats = feats.to(device, non_blocking=True, memory_format=memory_format)
        else:
            feats = feats.to(device, non_blocking=True)
        mask = None if self.mask is None else self.mask.to(device, non_blocking=True)
        return CachedBatch(self.indices, feats, mask)
