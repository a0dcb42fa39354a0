"""Per-class loss weights from ``hyperparameters.class_weights``: checked against the
dataset's classes when a spec is planned, turned into a weight vector when it trains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from thaw.errors import SpecError
from thaw.spec import Hyperparameters

WEIGHTS_LOC = ("hyperparameters", "class_weights")


def balanced_weights(counts: Sequence[int]) -> list[float]:
    """``n / (k * count)`` per class (sklearn's "balanced"); a class with no training
    example weighs 0, since it never appears in the loss."""
    n, k = sum(counts), len(counts)
    return [n / (k * c) if c > 0 else 0.0 for c in counts]


def check_class_weights(weights: str | Mapping[str, float] | None, classes: Sequence[str]) -> None:
    """Refuse a ``{class: weight}`` naming a class the dataset does not have."""
    if not isinstance(weights, Mapping):
        return
    known = set(classes)
    unknown = sorted(c for c in weights if c not in known)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:5])
        raise SpecError(
            (*WEIGHTS_LOC, unknown[0]),
            f"class_weights names {len(unknown)} class(es) the dataset does not have: {shown}",
            f"use the dataset's classes: {', '.join(list(classes)[:10])}",
        )


def class_weight_vector(
    hp: Hyperparameters, classes: Sequence[str], train_labels: np.ndarray | Sequence[int]
) -> torch.Tensor | None:
    """The per-class weight tensor for ``hp.class_weights`` (None: every class weighs 1)."""
    weights = hp.class_weights
    if weights is None:
        return None
    if weights == "balanced":
        counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(classes))
        return torch.tensor(balanced_weights(counts.tolist()), dtype=torch.float32)
    assert isinstance(weights, Mapping)
    check_class_weights(weights, classes)
    return torch.tensor([float(weights.get(c, 1.0)) for c in classes], dtype=torch.float32)
