"""DataLoaders whose shuffle order depends only on (seed, epoch), so a resumed run sees the
same batches as an unbroken one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from thaw.cpus import cpu_share
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
    """Loader processes when the spec leaves it open: none on a CPU (they would take the
    cores training uses), else the CPUs this process may use (affinity, cgroup) less one."""
    if requested is not None:
        return requested
    if placement.device.type != "cuda":
        return 0
    return cpu_share().loader_workers


def make_loaders(
    train: Dataset[Any],
    val: Dataset[Any],
    *,
    batch_size: int,
    seed: int,
    placement: Placement,
    workers: int,
    collate_fn: Any = None,
    persistent: bool = True,
) -> tuple[DataLoader[Any], DataLoader[Any], EpochSampler]:
    sampler = EpochSampler(train, seed, flips=_flips(train))
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": workers,
        "pin_memory": placement.pin_memory,
        "collate_fn": collate_fn,
        "persistent_workers": persistent and workers > 0,
    }
    if workers > 0:
        common["generator"] = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, sampler=sampler, **common)
    val_loader = DataLoader(val, shuffle=False, **common)
    return train_loader, val_loader, sampler


def _flips(data: Dataset[Any]) -> bool:
    """Whether the sampler draws random horizontal flips for ``data`` (augment "flip")."""
    return getattr(data, "augment", None) == "flip"
