"""A checkpoint's ``adapter/`` folder in PEFT's own layout, and the merged weights beside it.

``adapter/adapter_config.json`` and ``adapter/adapter_model.safetensors`` are what
``PeftModel.from_pretrained(base, folder)`` reads: every adapter under PEFT's saved keys
(``base_model.model.X.lora_A.weight``) and every base module that trained, whole, as
``modules_to_save``. ``model.safetensors`` holds the merged weights (base plus each
adapter's delta, as ``merge_and_unload`` computes them) under the base model's names;
``thaw.freezing.adapters`` takes both out of the adapted model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from thaw.atomic import atomic_path
from thaw.checkpoints.errors import CorruptCheckpoint
from thaw.checkpoints.tensor_file import save_tensors

if TYPE_CHECKING:
    from peft import LoraConfig

ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (f"{ADAPTER_DIR}/{ADAPTER_CONFIG}", f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}")
PEFT_PREFIX = "base_model.model."
ADAPTER_NAME = "default"
"""The one adapter of an adapted model, by PEFT's default name."""
LORA_PARTS = ("lora_A", "lora_B")


@dataclass(frozen=True)
class AdapterExport:
    config: LoraConfig
    tensors: dict[str, torch.Tensor]
    """Under PEFT's saved keys."""


def write_adapter(folder: Path, export: AdapterExport) -> list[str]:
    """Write ``folder/adapter/``; the names of its files relative to ``folder``."""
    target = folder / ADAPTER_DIR
    target.mkdir(exist_ok=True)
    export.config.save_pretrained(str(target))
    with atomic_path(target / ADAPTER_WEIGHTS) as tmp:
        save_tensors(tmp, export.tensors, {"format": "pt"})
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
        if part in LORA_PARTS and owner in wanted:
            name = f"{module}.{ADAPTER_NAME}.{leaf}"
        out[name] = value
    return out
