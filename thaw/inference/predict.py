"""Top-k classes and probabilities of a checkpoint for a few images or texts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from thaw.inference.checkpoint_model import CheckpointModel


def top_classes(logits: torch.Tensor, classes: Sequence[str], k: int) -> list[list[dict[str, Any]]]:
    """Per row, the ``k`` most probable classes, most probable first."""
    probs = logits.float().softmax(dim=1)
    values, indices = probs.topk(min(k, len(classes)), dim=1)
    return [
        [{"class": classes[i], "probability": float(p)} for p, i in zip(vs, ix, strict=True)]
        for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def predict(
    model: CheckpointModel,
    *,
    texts: Sequence[str] | None = None,
    folder: Path | None = None,
    files: Sequence[str] = (),
    names: Sequence[str] = (),
    top_k: int,
    batch_size: int,
) -> list[dict[str, Any]]:
    """One entry per input, in order: ``input`` (a file name or the text's index) and
    ``top``. Images are the ``files`` under ``folder``, shown by ``names``."""
    if texts is not None:
        data = model.text_dataset(texts, [0] * len(texts))
        shown = [f"text {i + 1}" for i in range(len(texts))]
    else:
        assert folder is not None
        data = model.image_dataset(folder, list(files), [0] * len(files))
        shown = list(names or files)
    rows: list[list[dict[str, Any]]] = []
    for logits, _ in model.batches(data, batch_size):
        rows.extend(top_classes(logits, model.classes, top_k))
    return [{"input": name, "top": top} for name, top in zip(shown, rows, strict=True)]
