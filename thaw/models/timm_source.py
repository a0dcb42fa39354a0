"""timm image classifiers: an architecture by name, or a folder in timm's hub layout.

A name is first looked up as a folder under THAW_MODELS_DIR (``config.json`` with
``architecture`` and ``pretrained_cfg``, weights in ``model.safetensors``); otherwise it is
a timm architecture, optionally with a pretrained tag (``convnext_tiny.fb_in22k``).
"""

from __future__ import annotations

import difflib
import json
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from thaw.errors import ModelError
from thaw.models.built import ImageInputs
from thaw.models.local_files import safetensors_weights
from thaw.paths import path_under

_LOC = ("base_model", "name")
PRETRAINED = "pretrained"


@dataclass(frozen=True)
class TimmModel:
    """Where a timm model comes from: ``folder`` (hub layout) or an architecture name."""

    name: str
    architecture: str
    folder: Path | None = None

    @property
    def create_name(self) -> str:
        return f"local-dir:{self.folder}" if self.folder is not None else self.name


@lru_cache(maxsize=1)
def architectures() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def locate(name: str, models_dir: Path) -> TimmModel:
    """A hub-layout folder under ``models_dir`` named ``name``, else a timm architecture."""
    from timm.models import split_model_name_tag

    if "/" in name or not _is_architecture(name):
        folder = path_under(models_dir, name, _LOC, "model folder")
        config = folder / "config.json"
        if config.is_file():
            return TimmModel(name, _folder_architecture(config), folder)
    architecture = split_model_name_tag(name)[0]
    if _is_architecture(name):
        return TimmModel(name, architecture)
    close = difflib.get_close_matches(architecture, architectures(), n=5, cutoff=0.6)
    raise ModelError(
        _LOC,
        f"unknown timm model {name!r}: neither a timm architecture nor a folder with "
        "config.json under THAW_MODELS_DIR",
        f"closest: {', '.join(close)}" if close else "timm.list_models() lists the architectures",
    )


def _is_architecture(name: str) -> bool:
    from timm.models import is_model, split_model_name_tag

    return is_model(split_model_name_tag(name)[0])


def _folder_architecture(config: Path) -> str:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        architecture = data["architecture"]
        if not isinstance(data["pretrained_cfg"], dict):
            raise TypeError("pretrained_cfg is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            _LOC,
            f"{config.parent.name}/config.json is not a timm model config ({exc})",
            "save the folder with timm's save_for_hf (architecture, pretrained_cfg)",
        ) from exc
    if not isinstance(architecture, str) or not _is_architecture(architecture):
        raise ModelError(_LOC, f"{config.parent.name}/config.json names no timm architecture")
    return architecture


def build(located: TimmModel, num_classes: int, *, download: bool) -> nn.Module:
    """The architecture with a ``num_classes`` head; weights come from the hub only if
    ``download`` (a worker with THAW_ALLOW_HUB_DOWNLOADS), never from a folder here."""
    import timm

    try:
        if located.folder is not None:
            model = timm.create_model(located.create_name, pretrained=False)
            if model.num_classes != num_classes:
                model.reset_classifier(num_classes)
            return model
        return timm.create_model(located.name, pretrained=download, num_classes=num_classes)
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise ModelError(_LOC, f"timm cannot build {located.name!r}: {exc}") from exc


def folder_weights(located: TimmModel, allow_pickle: bool) -> Path | None:
    """The folder's weights file, or None for an architecture by name."""
    if located.folder is None:
        return None
    return safetensors_weights(located.folder, _LOC, allow_pickle=allow_pickle)


def head_paths(model: nn.Module) -> tuple[str, ...]:
    """The classifier module(s) timm names in the model's pretrained_cfg."""
    declared = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (declared,) if isinstance(declared, str) else tuple(declared)
    found = []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if any(True for _ in module.parameters()):
            found.append(name)
    return tuple(found)


def data_config(model: nn.Module) -> ImageInputs:
    """Input size, mean, std and interpolation from timm's data config of the model."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    pretrained = getattr(model, "pretrained_cfg", None) or {}
    return ImageInputs(
        image_size=int(cfg["input_size"][-1]),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        interpolation=str(cfg.get("interpolation", "bilinear")),
        fixed_input_size=bool(pretrained.get("fixed_input_size", False)),
    )


def hub_config(model: nn.Module, classes: list[str]) -> dict[str, Any]:
    """The ``config.json`` of timm's hub layout for ``model``, written by timm itself."""
    from timm.models._hub import save_config_for_hf

    with tempfile.TemporaryDirectory(prefix="thaw-timm-") as tmp:
        path = Path(tmp) / "config.json"
        save_config_for_hf(model, str(path), model_config={"label_names": list(classes)})
        return json.loads(path.read_text(encoding="utf-8"))


def rebuild(folder: Path) -> nn.Module:
    """A fresh model from a checkpoint folder's timm hub config (architecture, model_args)."""
    import timm

    return timm.create_model(f"local-dir:{folder}", pretrained=False)
