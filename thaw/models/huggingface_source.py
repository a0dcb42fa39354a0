"""Hugging Face sequence classifiers from a folder under the models root or a hub id."""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import nn

from thaw.errors import ModelError
from thaw.paths import resolve_under

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_LOC = ("base_model", "name")


def locate(name: str, models_dir: Path) -> str:
    """A local folder under ``models_dir`` if there is one, else the hub id itself."""
    local = resolve_under(models_dir, name, _LOC, "model folder")
    if (local / "config.json").is_file():
        return str(local)
    if _HUB_ID.match(name) and "/" in name:
        return name
    raise ModelError(
        _LOC,
        f"no Hugging Face model folder {name!r} under THAW_MODELS_DIR",
        "copy the model folder (config.json and weights) there, or give a hub id 'org/name'",
    )


def load_config(location: str, num_classes: int):
    from transformers import AutoConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return AutoConfig.from_pretrained(location, num_labels=num_classes)
    except (OSError, ValueError) as exc:
        raise ModelError(_LOC, f"cannot read the model config of {location!r}: {exc}") from exc


def build(location: str, num_classes: int, *, pretrained: bool) -> nn.Module:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    config = load_config(location, num_classes)
    if not pretrained:
        return AutoModelForSequenceClassification.from_config(config)
    logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            location, config=config, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError) as exc:
        raise ModelError(_LOC, f"cannot load weights of {location!r}: {exc}") from exc


def head_path(model: nn.Module) -> str | None:
    for candidate in ("classifier", "score"):
        if isinstance(getattr(model, candidate, None), nn.Module):
            return candidate
    return None
