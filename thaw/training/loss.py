"""The training loss: cross-entropy with the spec's class weights and label smoothing."""

from __future__ import annotations

import torch
from torch import nn

from thaw.spec import Hyperparameters


class TrainingLoss:
    """``loss(logits, labels)``: the mean over the batch, in float32."""

    def __init__(self, hp: Hyperparameters, weight: torch.Tensor | None, device: torch.device):
        self.weight = weight.to(device) if weight is not None else None
        self.label_smoothing = hp.label_smoothing

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            logits, labels, weight=self.weight, label_smoothing=self.label_smoothing
        )
