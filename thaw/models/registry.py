"""Build a base model for N classes from a spec's ``base_model``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.overrides import TorchFunctionMode

from thaw.models import huggingface_source, torchvision_source
from thaw.models.built import BuiltModel
from thaw.models.heads import find_head, replace_head
from thaw.models.weights_file import check_weights_file, load_weights_file
from thaw.paths import resolve_under

if TYPE_CHECKING:
    from thaw.settings import Settings
    from thaw.spec import BaseModelRef


def available_sources() -> list[dict[str, Any]]:
    """What ``GET /v1/models`` shows: each source and the builders it offers."""
    return [
        {
            "source": "torchvision",
            "builders": list(torchvision_source.builder_names()),
            "weights": "enum member name such as DEFAULT, or null; or weights_file",
        },
        {
            "source": "huggingface",
            "builders": [],
            "weights": "folder under THAW_MODELS_DIR or hub id; loaded as a sequence classifier",
        },
        {"source": "job", "builders": [], "weights": "a finished job's best or last checkpoint"},
    ]


def build_model(
    ref: BaseModelRef,
    num_classes: int,
    settings: Settings,
    *,
    meta: bool = True,
    classes: list[str] | None = None,
) -> BuiltModel:
    """The model with its head sized to ``num_classes``.

    ``meta=True`` builds shapes only (no weights are read or fetched, only headers are
    checked), which is how a spec is validated at submit time.
    """
    if ref.source == "job":
        from thaw.models.job_source import build_from_job

        return build_from_job(ref, num_classes, settings, meta=meta, classes=classes)
    build = _build_torchvision if ref.source == "torchvision" else _build_huggingface
    if not meta:
        built = build(ref, num_classes, settings, False)
    else:
        try:
            with torch.device("meta"):
                built = build(ref, num_classes, settings, True)
        except NotImplementedError:
            # A few builders (RegNet) compute their widths with tensor ops, which meta
            # cannot run: compute those on the CPU, allocate only weights on meta.
            with _WeightsOnMeta():
                built = build(ref, num_classes, settings, True)
            built.model.to("meta")
    built.classes = list(classes) if classes else [str(i) for i in range(num_classes)]
    return built


class _WeightsOnMeta(TorchFunctionMode):
    """Allocate every ``torch.empty`` (how layers create weights) on ``meta``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func is torch.empty:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _build_torchvision(
    ref: BaseModelRef, num_classes: int, settings: Settings, meta: bool
) -> BuiltModel:
    model = torchvision_source.build(ref.name, ref.weights, pretrained=not meta)
    head = find_head(model)
    replace_head(model, head, num_classes)
    warnings = _apply_weights_file(ref, model, head, settings, meta)
    return BuiltModel(
        model=model,
        source="torchvision",
        name=ref.name,
        modality="image",
        head=head,
        num_classes=num_classes,
        convolutional=torchvision_source.is_convolutional(model),
        warnings=warnings,
    )


def _build_huggingface(
    ref: BaseModelRef, num_classes: int, settings: Settings, meta: bool
) -> BuiltModel:
    location = huggingface_source.locate(ref.name, settings.models_dir)
    model = huggingface_source.build(
        location, num_classes, pretrained=not meta and not ref.weights_file
    )
    head = huggingface_source.head_path(model) or find_head(model)
    warnings = _apply_weights_file(ref, model, head, settings, meta)
    return BuiltModel(
        model=model,
        source="huggingface",
        name=ref.name,
        modality="text",
        head=head,
        num_classes=num_classes,
        tokenizer_path=location,
        hf_config=model.config.to_dict(),
        warnings=warnings,
    )


def _apply_weights_file(
    ref: BaseModelRef, model: Any, head: str, settings: Settings, meta: bool
) -> list[str]:
    if ref.weights_file is None:
        return []
    path = resolve_under(
        settings.models_dir, ref.weights_file, ("base_model", "weights_file"), "weights file"
    )
    reinit = (check_weights_file if meta else load_weights_file)(model, path, head)
    if reinit:
        return [f"{head} is re-initialized for the dataset's classes ({len(reinit)} tensors)"]
    return []
