"""Evaluate a checkpoint on labelled data: confusion matrix, per-class scores, worst examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from thaw.data.folder import list_image_folder
from thaw.data.rows import read_text_rows
from thaw.inference.checkpoint_model import CheckpointModel
from thaw.inference.errors import check_classes
from thaw.training.confusion import ConfusionMatrix


@dataclass
class LabelledData:
    """A dataset in the checkpoint's class order, and a name for each example."""

    data: Dataset[Any]
    names: list[str]


def uploaded_data(
    model: CheckpointModel, path: Path, fmt: str, within: Sequence[Path]
) -> LabelledData:
    """An uploaded image folder or text file, every example of it."""
    classes = model.classes
    index = {name: i for i, name in enumerate(classes)}
    if fmt == "image_folder":
        samples = list_image_folder(path, within=within).samples
        check_classes(sorted({s.label for s in samples}), classes)
        paths = [s.path for s in samples]
        data = model.image_dataset(path, paths, [index[s.label] for s in samples])
        return LabelledData(data, paths)

    rows = read_text_rows(path, fmt)
    check_classes(sorted(set(rows.labels)), classes)
    data = model.text_dataset(rows.texts, [index[label] for label in rows.labels])
    return LabelledData(data, [f"row {i + 1}" for i in range(len(rows.texts))])


def validation_names(val: Dataset[Any]) -> list[str]:
    """Image file names of a validation part, else row numbers."""
    paths = getattr(val, "relative_paths", None)
    if paths is not None:
        return [str(p) for p in paths]
    return [f"example {i + 1}" for i in range(len(val))]  # type: ignore[arg-type]


def evaluate(
    model: CheckpointModel,
    labelled: LabelledData,
    *,
    batch_size: int,
    worst: int,
    pairs: int,
) -> dict[str, Any]:
    """Scores of ``model`` on ``labelled``, as the evaluation's result document."""
    classes = model.classes
    confusion = ConfusionMatrix(len(classes))
    losses: list[torch.Tensor] = []
    predicted: list[torch.Tensor] = []
    confidence: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    for logits, labels in model.batches(labelled.data, batch_size):
        probs = logits.softmax(dim=1)
        preds = logits.argmax(dim=1)
        confusion.update(preds, labels)
        losses.append(nn.functional.cross_entropy(logits, labels, reduction="none"))
        predicted.append(preds)
        confidence.append(probs.gather(1, preds[:, None])[:, 0])
        targets.append(labels)
    scores = confusion.per_class()
    result: dict[str, Any] = {
        "num_examples": confusion.total,
        "accuracy": confusion.accuracy(),
        "f1_macro": confusion.f1_macro(),
        "f1_weighted": confusion.f1_weighted(),
        "classes": classes,
        "per_class": [
            {
                "class": name,
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
                "support": s.support,
            }
            for name, s in zip(classes, scores, strict=True)
        ],
        "confusion_matrix": confusion.matrix.tolist(),
        "most_confused": most_confused(confusion.matrix, classes, pairs),
        "worst_examples": [],
    }
    if losses:
        result["worst_examples"] = worst_examples(
            torch.cat(losses),
            torch.cat(targets),
            torch.cat(predicted),
            torch.cat(confidence),
            labelled.names,
            classes,
            worst,
        )
    return result


def most_confused(matrix: torch.Tensor, classes: list[str], limit: int) -> list[dict[str, Any]]:
    """Off-diagonal cells with a count, largest first: ``true`` taken for ``predicted``."""
    cells = [
        (int(matrix[t, p]), t, p)
        for t in range(len(classes))
        for p in range(len(classes))
        if t != p and int(matrix[t, p]) > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": classes[t], "predicted": classes[p], "count": n} for n, t, p in cells[:limit]]


def worst_examples(
    losses: torch.Tensor,
    targets: torch.Tensor,
    predicted: torch.Tensor,
    confidence: torch.Tensor,
    names: list[str],
    classes: list[str],
    limit: int,
) -> list[dict[str, Any]]:
    """The examples with the highest loss: name, true and predicted class, confidence."""
    order = torch.argsort(losses, descending=True, stable=True)[:limit].tolist()
    return [
        {
            "example": names[i],
            "true": classes[int(targets[i])],
            "predicted": classes[int(predicted[i])],
            "confidence": float(confidence[i]),
            "loss": float(losses[i]),
        }
        for i in order
    ]
