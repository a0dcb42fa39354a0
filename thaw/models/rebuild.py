"""Rebuild a model's architecture from a checkpoint folder's record, with fresh weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from thaw.errors import ModelError
from thaw.models import huggingface_source, timm_source, torchvision_source
from thaw.models.heads import replace_head


def rebuild_architecture(config: dict[str, Any], folder: Path) -> nn.Module:
    """The architecture of the checkpoint in ``folder`` (its record ``config``) with fresh
    weights, on the current device. Hugging Face and timm models come from the folder's
    own ``config.json``, as their libraries would load them."""
    source = config.get("source")
    num_classes = int(config["num_classes"])
    if source == "torchvision":
        model = torchvision_source.build(config["name"], None, pretrained=False)
        replace_head(model, config["head"], num_classes)
        return model
    if source == "huggingface" and config.get("hf_config") is not None:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        hf = dict(config["hf_config"])
        hf_config = AutoConfig.for_model(hf.pop("model_type"), **hf)
        hf_config.num_labels = num_classes
        return AutoModelForSequenceClassification.from_config(hf_config)
    if source == "huggingface":
        return huggingface_source.rebuild(folder, image=config.get("modality") == "image")
    if source == "timm":
        return timm_source.rebuild(folder)
    raise ModelError(("base_model",), f"checkpoint config has an unknown source {source!r}")
