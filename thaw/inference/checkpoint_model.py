"""A checkpoint loaded for inference, with the input pipeline it was trained with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thaw.checkpoints import read_config
from thaw.data.images import ImageFolderDataset
from thaw.data.text import PadCollate, pad_token_id, tokenize_dataset
from thaw.models.loading import load_model


@dataclass
class CheckpointModel:
    """``model`` in eval mode on ``device``; ``config`` its rebuild record."""

    model: nn.Module
    config: dict[str, Any]
    device: torch.device
    _tokenizer: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> CheckpointModel:
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = load_model(folder, device=str(target))
        return cls(model, read_config(folder), target)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.config["classes"]]

    @property
    def modality(self) -> str:
        return str(self.config.get("modality", "image"))

    def image_dataset(self, root: str | Path, paths: Sequence[str], labels: Sequence[int]):  # type: ignore[no-untyped-def]
        """Images as training fed them: the record's size, mean and std, no augmentation."""

        return ImageFolderDataset(
            root,
            paths,
            labels,
            image_size=int(self.config["image_size"]),
            mean=self.config["mean"],
            std=self.config["std"],
        )

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.config["tokenizer_path"])
        return self._tokenizer

    def text_dataset(self, texts: Sequence[str], labels: Sequence[int]) -> Dataset[Any]:

        max_length = int(self.config.get("max_length") or 128)
        return tokenize_dataset(list(texts), list(labels), self.tokenizer(), max_length)

    def loader(self, data: Dataset[Any], batch_size: int) -> DataLoader[Any]:
        collate = None
        if self.modality == "text":
            collate = PadCollate(pad_token_id(self.tokenizer()))
        return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate)

    @torch.no_grad()
    def logits(self, inputs: Any) -> torch.Tensor:
        if isinstance(inputs, dict):
            out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        else:
            out = self.model(inputs.to(self.device))
        return (out.logits if hasattr(out, "logits") else out).float()

    def batches(
        self, data: Dataset[Any], batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(logits, labels)`` per batch, on the CPU, in the dataset's order."""
        for inputs, labels in self.loader(data, batch_size):
            yield self.logits(inputs).cpu(), labels
