"""Hugging Face classifiers: sequence classifiers for text, image classifiers for images.

A name is a folder under THAW_MODELS_DIR. A hub id (``org/name``) is accepted only with
THAW_ALLOW_HUB_DOWNLOADS, and only a worker downloads it: validation (``local_only``)
reads what is on disk, so a request handler never contacts the hub.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from thaw.errors import ModelError
from thaw.models.built import ImageInputs
from thaw.models.local_files import safetensors_weights
from thaw.paths import path_under

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LOC = ("base_model", "name")
_PLACE_IT = (
    "place the model folder (config.json and model.safetensors) under THAW_MODELS_DIR "
    "and give its name"
)
# Architectures whose position embeddings fix the input size.
_FIXED_SIZE_TYPES = {"vit", "deit", "beit", "data2vec-vision", "vit_msn"}
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


@dataclass(frozen=True)
class Located:
    location: str
    folder: Path | None


def locate(name: str, models_dir: Path, *, hub_allowed: bool) -> Located:
    """A local folder under ``models_dir``; a hub id only when downloads are allowed."""
    if not (hub_allowed and _HUB_ID.match(name)):
        local = path_under(models_dir, name, _LOC, "model folder")
        if (local / "config.json").is_file():
            return Located(str(local), local)
    elif (models_dir / name / "config.json").is_file():
        local = path_under(models_dir, name, _LOC, "model folder")
        return Located(str(local), local)
    if hub_allowed and _HUB_ID.match(name):
        return Located(name, None)
    missing = f"no Hugging Face model folder {name!r} under THAW_MODELS_DIR"
    raise ModelError(_LOC, missing, _PLACE_IT)


def load_config(located: Located, num_classes: int, classes: list[str], *, local_only: bool):
    from transformers import AutoConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    labels = classes if len(classes) == num_classes else [str(i) for i in range(num_classes)]
    try:
        return AutoConfig.from_pretrained(
            located.location,
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            local_files_only=local_only,
        )
    except (OSError, ValueError) as exc:
        if located.folder is None:
            raise ModelError(
                _LOC,
                f"the config of hub model {located.location!r} is not on this server yet",
                _PLACE_IT,
            ) from exc
        unreadable = f"cannot read the model config of {located.location!r}: {exc}"
        raise ModelError(_LOC, unreadable) from exc


def is_image_config(config: Any) -> bool:
    """An image classifier (AutoModelForImageClassification) rather than a text one."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForImageClassification") for a in architectures):
        return True
    kind = config.model_type
    return (
        kind in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
        and kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    )


def auto_class(image: bool):
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    return AutoModelForImageClassification if image else AutoModelForSequenceClassification


def build(
    located: Located,
    config: Any,
    *,
    pretrained: bool,
    local_only: bool,
    allow_pickle: bool,
) -> nn.Module:
    """The classifier for ``config``; weights are read only if ``pretrained``."""
    from transformers.utils import logging

    cls = auto_class(is_image_config(config))
    try:
        if not pretrained:
            model = cls.from_config(config)
        else:
            use_safetensors = True
            if located.folder is not None:
                weights = safetensors_weights(located.folder, _LOC, allow_pickle=allow_pickle)
                use_safetensors = weights.name.startswith("model.safetensors")
            logging.set_verbosity_error()
            model = cls.from_pretrained(
                located.location,
                config=config,
                ignore_mismatched_sizes=True,
                use_safetensors=use_safetensors,
                local_files_only=local_only,
            )
    except (OSError, ValueError) as exc:
        raise ModelError(_LOC, f"cannot load {located.location!r}: {exc}") from exc
    model.config.architectures = [type(model).__name__]
    return model


def check_weights_present(located: Located, *, allow_pickle: bool) -> None:
    """At validation: a local folder holds loadable weights (safetensors unless allowed)."""
    if located.folder is not None:
        safetensors_weights(located.folder, _LOC, allow_pickle=allow_pickle)


def head_path(model: nn.Module) -> str | None:
    for candidate in ("classifier", "score"):
        if isinstance(getattr(model, candidate, None), nn.Module):
            return candidate
    return None


def image_inputs(located: Located, config: Any, *, local_only: bool) -> ImageInputs:
    """Size, mean, std and interpolation from the folder's image processor config."""
    processor = _processor_config(located, local_only)
    size = processor.get("size") or processor.get("crop_size") or getattr(config, "image_size", 224)
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or next(iter(size.values()))
    if isinstance(size, list | tuple):
        size = size[-1]
    mean = processor.get("image_mean") or (0.5, 0.5, 0.5)
    std = processor.get("image_std") or (0.5, 0.5, 0.5)
    return ImageInputs(
        image_size=int(size),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        interpolation=_RESAMPLE.get(processor.get("resample", 2), "bilinear"),
        fixed_input_size=config.model_type in _FIXED_SIZE_TYPES,
    )


def _processor_config(located: Located, local_only: bool) -> dict[str, Any]:
    if located.folder is not None:
        path: Path | None = located.folder / "preprocessor_config.json"
    else:
        from transformers.utils import cached_file

        found = cached_file(
            located.location,
            "preprocessor_config.json",
            local_files_only=local_only,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        path = Path(found) if found else None
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(_LOC, f"preprocessor_config.json is unreadable: {exc}") from exc
    return data if isinstance(data, dict) else {}


def rebuild(folder: Path, image: bool) -> nn.Module:
    """A fresh classifier from a checkpoint folder's own Hugging Face config.json."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    return auto_class(image).from_config(config)
