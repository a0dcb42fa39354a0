"""``thaw.load_model(folder)``: a fine-tuned model, or a base model with its adapter, from
a checkpoint folder."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from thaw.checkpoints import load_model_state, read_config
from thaw.checkpoints.adapter import ADAPTER_CONFIG
from thaw.errors import ModelError
from thaw.models.rebuild import rebuild_architecture
from thaw.models.registry import build_model
from thaw.settings import Settings
from thaw.spec import BaseModelRef


def load_model(
    folder: str | Path, device: str = "cpu", settings: Settings | None = None
) -> nn.Module:
    """A fine-tuned model from a checkpoint folder, in eval mode, in one call; from a
    checkpoint's ``adapter/`` folder, its base model (found through ``settings``) with the
    adapter on it."""
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
    from peft import PeftModel  # PEFT loads only for an adapter

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
