"""Build a base model for N classes from a spec's ``base_model``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.overrides import TorchFunctionMode

from thaw.errors import ModelError
from thaw.models import huggingface_source, timm_source, torchvision_source
from thaw.models.built import BuiltModel
from thaw.models.heads import find_head, replace_head
from thaw.models.job_source import build_from_job
from thaw.models.weights_file import check_weights_file, load_weights_file
from thaw.paths import path_under

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from thaw.settings import Settings
    from thaw.spec import BaseModelRef


def available_sources() -> list[dict[str, Any]]:
    """What ``GET /v1/models`` shows: each source, how to name a model, and its builders."""
    return [
        {
            "source": "torchvision",
            "builders": list(torchvision_source.builder_names()),
            "name": "a torchvision classification builder, such as resnet50",
            "weights": "enum member name such as DEFAULT, or null; or weights_file",
        },
        {
            "source": "timm",
            "builders": list(timm_source.architectures()),
            "name": "a timm architecture (convnext_tiny, vit_small_patch16_224), or a folder "
            "under THAW_MODELS_DIR in timm's hub layout (config.json, model.safetensors)",
            "weights": "weights_file (safetensors under THAW_MODELS_DIR), the folder's "
            "model.safetensors, 'pretrained' (hub; needs THAW_ALLOW_HUB_DOWNLOADS) or null",
        },
        {
            "source": "huggingface",
            "builders": [],
            "name": "a folder under THAW_MODELS_DIR with config.json and model.safetensors: "
            "an image classifier (ViT, DeiT, ConvNeXt, Swin, ResNet, MobileViT) or a "
            "sequence classifier; a hub id 'org/name' only with THAW_ALLOW_HUB_DOWNLOADS",
            "weights": "the folder's model.safetensors, or weights_file",
        },
        {
            "source": "job",
            "builders": [],
            "name": "the id of one of your finished jobs",
            "weights": "its best or last checkpoint ('checkpoint')",
        },
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
    labels = list(classes) if classes else [str(i) for i in range(num_classes)]
    if ref.source == "job":
        return build_from_job(ref, num_classes, settings, meta=meta, classes=classes)
    build = _BUILDERS[ref.source]
    if not meta:
        built = build(ref, num_classes, settings, False, labels)
    else:
        try:
            with torch.device("meta"):
                built = build(ref, num_classes, settings, True, labels)
        except NotImplementedError:
            # A few builders (RegNet) compute their widths with tensor ops, which meta
            # cannot run: compute those on the CPU, allocate only weights on meta.
            with _WeightsOnMeta():
                built = build(ref, num_classes, settings, True, labels)
            built.model.to("meta")
    built.classes = labels
    return built


class _WeightsOnMeta(TorchFunctionMode):
    """Allocate every ``torch.empty`` (how layers create weights) on ``meta``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func is torch.empty:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _build_torchvision(
    ref: BaseModelRef, num_classes: int, settings: Settings, meta: bool, classes: list[str]
) -> BuiltModel:
    model = torchvision_source.build(ref.name, ref.weights, pretrained=not meta)
    head = find_head(model)
    replace_head(model, head, num_classes)
    warnings = _apply_weights_file(ref, model, (head,), settings, meta)
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


def _build_timm(
    ref: BaseModelRef, num_classes: int, settings: Settings, meta: bool, classes: list[str]
) -> BuiltModel:
    located = timm_source.locate(ref.name, settings.models_dir)
    pretrained = ref.weights == timm_source.PRETRAINED
    if pretrained and located.folder is not None:
        raise ModelError(
            ("base_model", "weights"),
            f"{ref.name!r} is a local folder: its model.safetensors is loaded",
            "leave 'weights' null",
        )
    if pretrained and not settings.allow_hub_downloads:
        raise ModelError(
            ("base_model", "weights"),
            "'pretrained' downloads from the hub, which this server does not allow",
            "place the weights under THAW_MODELS_DIR (weights_file, or a folder in timm's "
            "hub layout), or set THAW_ALLOW_HUB_DOWNLOADS=true on the workers and the API",
        )
    model = timm_source.build(located, num_classes, download=pretrained and not meta)
    heads = timm_source.head_paths(model) or (find_head(model),)
    warnings: list[str] = []
    folder_weights = timm_source.folder_weights(located, settings.allow_pickle_weights)
    if folder_weights is not None and ref.weights_file is None:
        loc = ("base_model", "name")
        apply = check_weights_file if meta else load_weights_file
        warnings = _reinit_warning(heads, apply(model, folder_weights, heads, loc))
    warnings += _apply_weights_file(ref, model, heads, settings, meta)
    built = BuiltModel(
        model=model,
        source="timm",
        name=ref.name,
        modality="image",
        head=heads[0],
        num_classes=num_classes,
        convolutional=torchvision_source.is_convolutional(model),
        warnings=warnings,
    )
    built.take_image_inputs(timm_source.data_config(model))
    return built


def _build_huggingface(
    ref: BaseModelRef, num_classes: int, settings: Settings, meta: bool, classes: list[str]
) -> BuiltModel:
    hub = settings.allow_hub_downloads
    located = huggingface_source.locate(ref.name, settings.models_dir, hub_allowed=hub)
    local_only = meta or not hub
    config = huggingface_source.load_config(located, num_classes, classes, local_only=local_only)
    allow_pickle = settings.allow_pickle_weights
    if meta and ref.weights_file is None:
        huggingface_source.check_weights_present(located, allow_pickle=allow_pickle)
    model = huggingface_source.build(
        located,
        config,
        pretrained=not meta and not ref.weights_file,
        local_only=local_only,
        allow_pickle=allow_pickle,
    )
    head = huggingface_source.head_path(model) or find_head(model)
    warnings = _apply_weights_file(ref, model, (head,), settings, meta)
    built = BuiltModel(
        model=model,
        source="huggingface",
        name=ref.name,
        modality="text",
        head=head,
        num_classes=num_classes,
        tokenizer_path=located.location,
        warnings=warnings,
    )
    if huggingface_source.is_image_config(config):
        built.take_image_inputs(
            huggingface_source.image_inputs(located, config, local_only=local_only)
        )
        built.convolutional = torchvision_source.is_convolutional(model)
    return built


_BUILDERS = {
    "torchvision": _build_torchvision,
    "timm": _build_timm,
    "huggingface": _build_huggingface,
}


def _apply_weights_file(
    ref: BaseModelRef, model: nn.Module, heads: tuple[str, ...], settings: Settings, meta: bool
) -> list[str]:
    if ref.weights_file is None:
        return []
    loc = ("base_model", "weights_file")
    path = path_under(settings.models_dir, ref.weights_file, loc, "weights file")
    _check_suffix(path, settings)
    reinit = (check_weights_file if meta else load_weights_file)(model, path, heads, loc)
    return _reinit_warning(heads, reinit)


def _check_suffix(path: Path, settings: Settings) -> None:
    if path.suffix == ".safetensors":
        return
    if settings.allow_pickle_weights and path.suffix in (".bin", ".pt", ".pth"):
        return
    raise ModelError(
        ("base_model", "weights_file"),
        f"{path.name!r} is not a .safetensors file; Thaw loads safetensors only",
        "convert it with safetensors.torch.save_file(model.state_dict(), 'name.safetensors')",
    )


def _reinit_warning(heads: tuple[str, ...], reinit: list[str]) -> list[str]:
    if not reinit:
        return []
    return [f"{', '.join(heads)} re-initialized for the dataset's classes ({len(reinit)} tensors)"]


def library_config(built: BuiltModel) -> dict[str, Any] | None:
    """The ``config.json`` the source's own library loads the checkpoint folder with
    (Hugging Face's, or timm's hub layout); None when Thaw's record is that file."""
    if built.source == "huggingface":
        config = built.model.config.to_dict()
        config["id2label"] = {str(i): c for i, c in enumerate(built.classes)}
        config["label2id"] = {c: i for i, c in enumerate(built.classes)}
        config["architectures"] = [type(built.model).__name__]
        return config
    if built.source == "timm":
        return timm_source.hub_config(built.model, built.classes)
    return None
