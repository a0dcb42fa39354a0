"""What the registry hands back: the module and what it takes to feed and rebuild it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from thaw.data.info import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ImageInputs:
    """How a model's own source says to feed it images."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    fixed_input_size: bool


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
    interpolation: str = "bilinear"
    fixed_image_size: int | None = None
    max_length: int | None = None
    tokenizer_path: str | None = None
    convolutional: bool = False
    warnings: list[str] = field(default_factory=list)

    def take_image_inputs(self, inputs: ImageInputs) -> None:
        """An image model fed as its source says: size, normalization, interpolation."""
        self.modality = "image"
        self.tokenizer_path = None
        self.image_size = inputs.image_size
        self.mean, self.std = inputs.mean, inputs.std
        self.interpolation = inputs.interpolation
        self.fixed_image_size = inputs.image_size if inputs.fixed_input_size else None

    def config(self) -> dict[str, Any]:
        """Thaw's rebuild record, stored beside checkpoints (config.json or thaw.json)."""
        out: dict[str, Any] = {
            "source": self.source,
            "name": self.name,
            "modality": self.modality,
            "head": self.head,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
        }
        if self.modality == "image":
            out.update(
                image_size=self.image_size,
                mean=list(self.mean),
                std=list(self.std),
                interpolation=self.interpolation,
            )
            if self.fixed_image_size is not None:
                out["fixed_image_size"] = self.fixed_image_size
        else:
            out.update(max_length=self.max_length, tokenizer_path=self.tokenizer_path)
        return out
