"""Seeded, stratified train/validation split."""

from __future__ import annotations

import random
from collections.abc import Sequence

from thaw.data.info import val_count


def stratified_split(
    labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of the train and validation parts, each in ascending order.

    Each class with at least two examples puts ``round(n * fraction)`` of them (at least one,
    never all) in validation; the same labels, fraction and seed give the same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    rng = random.Random(seed)
    val: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        val.extend(members[: val_count(len(members), fraction)])
    val.sort()
    chosen = set(val)
    train = [i for i in range(len(labels)) if i not in chosen]
    return train, val
