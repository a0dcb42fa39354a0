"""DataLoaders whose shuffle order depends only on (seed, epoch), so a resumed run sees the
same batches as an unbroken one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate

from thaw.training.device import Placement


class EpochSampler(RandomSampler):
    """A random permutation seeded by ``seed`` and the epoch number, set before each epoch.

    With ``flips``, each item is ``(index, flip)``: whether the sample is seen mirrored this
    epoch, drawn from its own generator seeded the same way. The draws depend on nothing
    but (seed, epoch, index), not on DataLoader workers nor on what the trainer runs, so a
    run that trains from cached features picks the same view as one that does not.
    """

    def __init__(self, data: Dataset[Any], seed: int, *, flips: bool = False):
        self._generator = torch.Generator()
        self._flip_generator = torch.Generator()
        super().__init__(data, generator=self._generator)
        self.seed = seed
        self.flips = flips
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self._generator.manual_seed(self.seed * 100_003 + epoch)
        self._flip_generator.manual_seed(self.seed * 100_003 + epoch + 2**40)

    def __iter__(self) -> Iterator[Any]:
        if not self.flips:
            yield from super().__iter__()
            return
        state = self._flip_generator.get_state()
        drawn = (torch.rand(len(self), generator=self._flip_generator) < 0.5).tolist()
        self._flip_generator.set_state(state)
        for index in super().__iter__():
            yield index, drawn[index]


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
    sampler = EpochSampler(train, seed, flips=_flips(train))
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


def _flips(data: Dataset[Any]) -> bool:
    """Whether the sampler draws random horizontal flips for ``data`` (augment "flip")."""
    inner = getattr(data, "data", data)
    return getattr(inner, "augment", None) == "flip"


Key = int | tuple[int, bool]


class Indexed(Dataset[tuple[Key, Any]]):
    """``(key, item)`` pairs, so a batch says which samples it holds (and which view)."""

    def __init__(self, data: Dataset[Any]):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, key: Key) -> tuple[Key, Any]:
        return key, self.data[key]


def split_keys(keys: list[Key]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample indices and views (1: mirrored) of a batch's keys."""
    indices = [k[0] if isinstance(k, tuple) else k for k in keys]
    views = [int(k[1]) if isinstance(k, tuple) else 0 for k in keys]
    return torch.tensor(indices, dtype=torch.long), torch.tensor(views, dtype=torch.long)


class IndexedCollate:
    """Collates ``(key, item)`` pairs into ``(inputs, labels, indices, views)``."""

    def __init__(self, inner: Any = None):
        self.inner = inner

    def __call__(self, batch: list[tuple[Key, Any]]) -> tuple[Any, Any, torch.Tensor, torch.Tensor]:
        indices, views = split_keys([k for k, _ in batch])
        items = [item for _, item in batch]
        inputs, labels = (self.inner or default_collate)(items)
        return inputs, labels, indices, views


class _Range(Dataset[Key]):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Key) -> Key:
        return key


def index_loader(like: DataLoader[Any], sampler: Any) -> DataLoader[Any]:
    """Batches of ``(indices, views)`` in the order ``like`` yields its samples.

    It shares ``like``'s generator, so starting an epoch draws the same random number
    (from that generator, or the global one) as starting ``like`` would.
    """
    return DataLoader(
        _Range(len(like.dataset)),  # type: ignore[arg-type]
        batch_size=like.batch_size,
        sampler=sampler,
        shuffle=False if sampler is None else None,
        generator=like.generator,
        collate_fn=split_keys,
    )
