"""A confusion matrix accumulated batch by batch, and the classification scores read from it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClassScores:
    """One class's scores; a ratio whose denominator is zero is 0.0 (sklearn's default)."""

    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix:
    """Counts of (true class, predicted class) over ``num_classes`` classes.

    ``matrix[t, p]`` is how many samples of true class ``t`` were predicted as ``p``, the
    layout of ``sklearn.metrics.confusion_matrix``. Counts live on the CPU as int64."""

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch of predicted and true class indices (1-D, same length)."""
        preds = preds.detach().reshape(-1).to("cpu", torch.int64)
        targets = targets.detach().reshape(-1).to("cpu", torch.int64)
        if preds.numel() != targets.numel():
            raise ValueError(f"{preds.numel()} predictions for {targets.numel()} targets")
        if preds.numel() == 0:
            return
        k = self.num_classes
        low = min(int(preds.min()), int(targets.min()))
        high = max(int(preds.max()), int(targets.max()))
        if low < 0 or high >= k:
            raise ValueError(f"class indices must lie in [0, {k}); got {low}..{high}")
        flat = torch.bincount(targets * k + preds, minlength=k * k)
        self.matrix += flat.reshape(k, k)

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def accuracy(self) -> float:
        total = self.total
        return float(self.matrix.diagonal().sum()) / total if total else 0.0

    def per_class(self) -> list[ClassScores]:
        m = self.matrix.to(torch.float64)
        hits = m.diagonal()
        predicted = m.sum(dim=0)
        support = m.sum(dim=1)
        precision = _ratio(hits, predicted)
        recall = _ratio(hits, support)
        f1 = _ratio(2 * hits, predicted + support)
        return [
            ClassScores(float(p), float(r), float(f), int(s))
            for p, r, f, s in zip(precision, recall, f1, support, strict=True)
        ]

    def f1_macro(self) -> float:
        """Mean F1 over classes seen in the targets or the predictions (sklearn's labels)."""
        seen = (self.matrix.sum(dim=0) + self.matrix.sum(dim=1)) > 0
        scores = [c.f1 for c, keep in zip(self.per_class(), seen.tolist(), strict=True) if keep]
        return sum(scores) / len(scores) if scores else 0.0

    def f1_weighted(self) -> float:
        """F1 averaged over classes weighted by their support."""
        rows = self.per_class()
        total = sum(c.support for c in rows)
        return sum(c.f1 * c.support for c in rows) / total if total else 0.0


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))
