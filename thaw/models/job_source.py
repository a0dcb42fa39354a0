"""``source: job``: continue from a finished job's best or last checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from thaw.checkpoints import (
    CheckpointError,
    find_checkpoint,
    load_model_state,
    read_config,
)
from thaw.errors import ModelError
from thaw.job_ids import JOB_ID
from thaw.models.built import BuiltModel
from thaw.models.heads import replace_head
from thaw.models.rebuild import rebuild_architecture
from thaw.models.torchvision_source import is_convolutional

if TYPE_CHECKING:
    from thaw.settings import Settings
    from thaw.spec import BaseModelRef

_LOC = ("base_model", "name")


def job_checkpoint(ref: BaseModelRef, settings: Settings) -> tuple[Path, dict[str, Any]]:
    """The folder and config.json of the finished job's ``best`` or ``last`` checkpoint."""
    if not JOB_ID.match(ref.name):
        raise ModelError(_LOC, f"{ref.name!r} is not a job id", "give the id of a finished job")
    try:
        folder = find_checkpoint(settings.jobs_dir / ref.name, ref.checkpoint)
        return folder, read_config(folder)
    except CheckpointError as exc:
        raise ModelError(_LOC, f"job {ref.name} has no {ref.checkpoint} checkpoint: {exc}") from exc


def build_from_job(
    ref: BaseModelRef,
    num_classes: int,
    settings: Settings,
    *,
    meta: bool,
    classes: list[str] | None = None,
) -> BuiltModel:
    folder, config = job_checkpoint(ref, settings)
    if meta:
        with torch.device("meta"):
            model = rebuild_architecture(config, folder)
    else:
        model = rebuild_architecture(config, folder)
        model.load_state_dict(load_model_state(folder), strict=True)
    head = config["head"]
    if config["source"] == "torchvision":
        replace_head(model, head, num_classes)
    elif config["source"] == "timm":
        if model.num_classes != num_classes:
            with torch.device("meta" if meta else "cpu"):
                model.reset_classifier(num_classes)
    elif int(config["num_classes"]) != num_classes:
        raise ModelError(_LOC, "a Hugging Face checkpoint continues with the same classes only")
    built = BuiltModel(
        model=model,
        source=config["source"],
        name=config["name"],
        modality=config["modality"],
        head=head,
        num_classes=num_classes,
        classes=list(classes or []),
        tokenizer_path=config.get("tokenizer_path"),
        convolutional=is_convolutional(model),
    )
    if config["modality"] == "image":
        built.mean, built.std = tuple(config["mean"]), tuple(config["std"])
        built.interpolation = config.get("interpolation", "bilinear")
        built.fixed_image_size = config.get("fixed_image_size")
    return built
