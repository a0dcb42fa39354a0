"""What the registry hands back: the module and what it takes to feed and rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from thaw.data.info import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from torch import nn


@dataclass
class BuiltModel:
    model: nn.Module
    source: str
    name: str
    modality: Literal["image", "text"]
    head: str
    num_classes: int
    classes: list[str] = field(default_factory=list)
    image_size: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    max_length: int | None = None
    tokenizer_path: str | None = None
    convolutional: bool = False
    hf_config: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        """The rebuild recipe stored beside checkpoints as config.json."""
        out: dict[str, Any] = {
            "source": self.source,
            "name": self.name,
            "modality": self.modality,
            "head": self.head,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
        }
        if self.modality == "image":
            out.update(image_size=self.image_size, mean=list(self.mean), std=list(self.std))
        else:
            out.update(
                max_length=self.max_length,
                tokenizer_path=self.tokenizer_path,
                hf_config=self.hf_config,
            )
        return out
