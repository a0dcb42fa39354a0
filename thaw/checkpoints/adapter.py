"""A checkpoint's ``adapter/`` folder in PEFT's own layout, and the merged weights beside it.

``adapter/adapter_config.json`` and ``adapter/adapter_model.safetensors`` are what
``PeftModel.from_pretrained(base, folder)`` reads: every adapter under PEFT's saved keys
(``base_model.model.X.lora_A.weight``) and every base module that trained, whole, as
``modules_to_save``. ``model.safetensors`` holds the merged weights (base plus each
adapter's delta, as ``merge_and_unload`` computes them) under the base model's names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from thaw.checkpoints.atomic import atomic_path
from thaw.checkpoints.errors import CorruptCheckpoint
from thaw.checkpoints.tensors import storable_tensors
from thaw.freezing.adapters import ADAPTER_NAME, Adapters, base_name

if TYPE_CHECKING:
    from peft import LoraConfig

ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (f"{ADAPTER_DIR}/{ADAPTER_CONFIG}", f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}")
PEFT_PREFIX = "base_model.model."
_PARTS = ("lora_A", "lora_B")


@dataclass(frozen=True)
class AdapterExport:
    config: LoraConfig
    tensors: dict[str, torch.Tensor]
    """Under PEFT's saved keys."""


def export_adapter(model: nn.Module, adapters: Adapters, saved: Iterable[str]) -> AdapterExport:
    """The adapter of ``model`` with the base modules in ``saved`` (whole), PEFT's way."""
    saved = list(saved)
    tensors: dict[str, torch.Tensor] = {}
    for target in adapters.targets:
        layer = model.get_submodule(target)
        for part in _PARTS:
            weight = getattr(layer, part)[ADAPTER_NAME].weight
            tensors[f"{PEFT_PREFIX}{target}.{part}.weight"] = weight.detach()
    for module in saved:
        for key, value in model.get_submodule(module).state_dict().items():
            tensors[f"{PEFT_PREFIX}{module}.{key}"] = value.detach()
    return AdapterExport(adapters.lora_config(saved), tensors)


def base_state(state: Mapping[str, torch.Tensor], adapters: Adapters) -> dict[str, torch.Tensor]:
    """An adapted model's state without its adapters, under the base model's names."""
    targets = frozenset(adapters.targets)
    skip = {f"{t}.{part}.{ADAPTER_NAME}" for t in targets for part in _PARTS}
    return {
        base_name(key, targets): value
        for key, value in state.items()
        if key.rpartition(".")[0] not in skip
    }


def merged_state(model: nn.Module, adapters: Adapters) -> dict[str, torch.Tensor]:
    """The model's state under base names with each adapter merged into its layer's weight."""
    out = base_state(model.state_dict(), adapters)
    with torch.no_grad():
        for target in adapters.targets:
            layer = model.get_submodule(target)
            weight = layer.base_layer.weight
            out[f"{target}.weight"] = weight + layer.get_delta_weight(ADAPTER_NAME).to(weight.dtype)
    return out


def write_adapter(folder: Path, export: AdapterExport) -> list[str]:
    """Write ``folder/adapter/``; the names of its files relative to ``folder``."""
    target = folder / ADAPTER_DIR
    target.mkdir(exist_ok=True)
    export.config.save_pretrained(str(target))
    with atomic_path(target / ADAPTER_WEIGHTS) as tmp:
        save_file(storable_tensors(export.tensors), str(tmp), metadata={"format": "pt"})
    return list(ADAPTER_FILES)


def has_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file()


def load_adapter_state(
    folder: str | Path, targets: Iterable[str], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """A checkpoint's adapter tensors under the adapted model's own names (to resume)."""
    path = Path(folder) / ADAPTER_DIR / ADAPTER_WEIGHTS
    try:
        saved = load_file(str(path), device=str(device))
    except (OSError, SafetensorError) as exc:
        raise CorruptCheckpoint(f"{path} is unreadable: {exc}") from exc
    return to_model_names(saved, targets)


def to_model_names(
    saved: Mapping[str, torch.Tensor], targets: Iterable[str]
) -> dict[str, torch.Tensor]:
    wanted = frozenset(targets)
    out: dict[str, torch.Tensor] = {}
    for key, value in saved.items():
        name = key.removeprefix(PEFT_PREFIX)
        module, _, leaf = name.rpartition(".")
        owner, _, part = module.rpartition(".")
        if part in _PARTS and owner in wanted:
            name = f"{module}.{ADAPTER_NAME}.{leaf}"
        out[name] = value
    return out
