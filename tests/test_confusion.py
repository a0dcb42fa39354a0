"""The confusion-matrix accumulator agrees with sklearn.metrics, batch by batch."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from thaw.training.confusion import ConfusionMatrix


def _accumulate(preds: torch.Tensor, targets: torch.Tensor, k: int, batch: int) -> ConfusionMatrix:
    cm = ConfusionMatrix(k)
    for i in range(0, len(preds), batch):
        cm.update(preds[i : i + batch], targets[i : i + batch])
    return cm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k = 5
    targets = torch.randint(0, k, (203,), generator=g)
    # Class 4 is never predicted (precision 0/0) and class 3 never occurs in the targets.
    targets[targets == 3] = 0
    preds = torch.where(
        torch.rand(203, generator=g) < 0.6, targets, torch.randint(0, k, (203,), generator=g)
    )
    preds[preds == 4] = 1
    cm = _accumulate(preds, targets, k, batch=17)
    y, p = targets.numpy(), preds.numpy()

    assert cm.total == 203
    assert cm.accuracy() == pytest.approx(accuracy_score(y, p), abs=1e-12)
    prec, rec, f1, sup = precision_recall_fscore_support(
        y, p, labels=list(range(k)), zero_division=0
    )
    rows = cm.per_class()
    assert [r.support for r in rows] == sup.tolist()
    assert [r.precision for r in rows] == pytest.approx(prec.tolist(), abs=1e-12)
    assert [r.recall for r in rows] == pytest.approx(rec.tolist(), abs=1e-12)
    assert [r.f1 for r in rows] == pytest.approx(f1.tolist(), abs=1e-12)
    assert cm.f1_macro() == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
    assert cm.f1_weighted() == pytest.approx(f1_score(y, p, average="weighted"), abs=1e-12)


def test_matrix_layout_is_true_by_predicted() -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 2]))
    assert cm.matrix.tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_empty_scores_are_zero() -> None:
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    assert (cm.accuracy(), cm.f1_macro(), cm.f1_weighted()) == (0.0, 0.0, 0.0)


def test_out_of_range_index_is_refused() -> None:
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        cm.update(torch.tensor([0, 2]), torch.tensor([0, 1]))
    assert cm.total == 0
