"""Rebuild a model from a checkpoint folder, and ``thaw.load_model(folder)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from thaw.errors import ModelError
from thaw.models import huggingface_source, timm_source, torchvision_source
from thaw.models.heads import replace_head
from thaw.settings import Settings


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


def load_model(
    folder: str | Path, device: str = "cpu", settings: Settings | None = None
) -> nn.Module:
    """A fine-tuned model from a checkpoint folder, in eval mode, in one call; from a
    checkpoint's ``adapter/`` folder, its base model (found through ``settings``) with the
    adapter on it."""
    from thaw.checkpoints import load_model_state, read_config
    from thaw.checkpoints.adapter import ADAPTER_CONFIG

    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        if settings is None:
            raise ValueError(f"{folder} is an adapter: give the settings that find its base model")
        return load_adapter_model(folder, settings).to(device).eval()
    config = read_config(folder)
    model = rebuild_architecture(config, folder)
    model.load_state_dict(load_model_state(folder, device="cpu"), strict=True)
    return model.to(device).eval()


def load_adapter_model(folder: Path, settings: Settings) -> nn.Module:
    """``PeftModel.from_pretrained`` on the base model the checkpoint's record names (its
    weights found as a job would find them) with the checkpoint's classes."""
    from peft import PeftModel

    from thaw.checkpoints import read_config
    from thaw.models.registry import build_model
    from thaw.spec import BaseModelRef

    config = read_config(folder.parent)
    record = config.get("adapter")
    if not isinstance(record, dict) or "base_model" not in record:
        raise ModelError(("base_model",), f"{folder.parent} records no adapter base model")
    ref = BaseModelRef.model_validate(record["base_model"])
    classes = [str(c) for c in config.get("classes", [])]
    built = build_model(
        ref, int(config["num_classes"]), settings, meta=False, classes=classes or None
    )
    return PeftModel.from_pretrained(built.model, str(folder))
