"""DataLoaders whose shuffle order depends only on (seed, epoch), so a resumed run sees the
same batches as an unbroken one."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate

from thaw.training.device import Placement


class EpochSampler(RandomSampler):
    """A random permutation seeded by ``seed`` and the epoch number, set before each epoch."""

    def __init__(self, data: Dataset[Any], seed: int):
        self._generator = torch.Generator()
        super().__init__(data, generator=self._generator)
        self.seed = seed
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self._generator.manual_seed(self.seed * 100_003 + epoch)


def default_workers(placement: Placement, requested: int | None) -> int:
    if requested is not None:
        return requested
    if placement.device.type != "cuda":
        return 0
    return min(8, max(1, (os.cpu_count() or 2) - 1))


def make_loaders(
    train: Dataset[Any],
    val: Dataset[Any],
    *,
    batch_size: int,
    seed: int,
    placement: Placement,
    workers: int,
    collate_fn: Any = None,
) -> tuple[DataLoader[Any], DataLoader[Any], EpochSampler]:
    sampler = EpochSampler(train, seed)
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": workers,
        "pin_memory": placement.pin_memory,
        "collate_fn": collate_fn,
        "persistent_workers": workers > 0,
    }
    if workers > 0:
        common["generator"] = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, sampler=sampler, **common)
    val_loader = DataLoader(val, shuffle=False, **common)
    return train_loader, val_loader, sampler


class Indexed(Dataset[tuple[int, Any]]):
    """``(index, item)`` pairs, so a batch says which samples it holds."""

    def __init__(self, data: Dataset[Any]):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.data[index]


class IndexedCollate:
    """Collates ``(index, item)`` pairs into ``(inputs, labels, indices)``."""

    def __init__(self, inner: Any = None):
        self.inner = inner

    def __call__(self, batch: list[tuple[int, Any]]) -> tuple[Any, Any, torch.Tensor]:
        indices = torch.tensor([i for i, _ in batch], dtype=torch.long)
        items = [item for _, item in batch]
        inputs, labels = (self.inner or default_collate)(items)
        return inputs, labels, indices


class _Range(Dataset[int]):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def index_loader(like: DataLoader[Any], sampler: Any) -> DataLoader[Any]:
    """Batches of sample indices in the order ``like`` yields its samples.

    It shares ``like``'s generator, so starting an epoch draws the same random number
    (from that generator, or the global one) as starting ``like`` would.
    """
    return DataLoader(
        _Range(len(like.dataset)),  # type: ignore[arg-type]
        batch_size=like.batch_size,
        sampler=sampler,
        shuffle=False if sampler is None else None,
        generator=like.generator,
        collate_fn=lambda idx: torch.tensor(idx, dtype=torch.long),
    )
