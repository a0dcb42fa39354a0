"""Turn a spec's dataset reference into train and validation datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thaw.data.shape import UploadLookup, dataset_path, find_upload
from thaw.models.job_source import job_checkpoint
from thaw.settings import Settings
from thaw.spec import DatasetSource, JobSpec, ValidationSplit


def modality_of(spec: JobSpec, settings: Settings) -> str:
    ref = spec.base_model
    if ref.source == "torchvision":
        return "image"
    if ref.source == "huggingface":
        return "text"
    return str(job_checkpoint(ref, settings)[1]["modality"])


def source_path(
    source: DatasetSource,
    settings: Settings,
    uploads: UploadLookup | None,
    loc: tuple[str, ...],
) -> Path | Any:
    if source.synthetic is not None:
        return source.synthetic
    if source.id is not None:
        return Path(find_upload(source.id, uploads, loc).path)
    return dataset_path(source, settings, loc)


def tokenizer_for(spec: JobSpec, settings: Settings) -> Any:
    from transformers import AutoTokenizer

    from thaw.models.huggingface_source import locate

    if spec.base_model.source == "job":
        return AutoTokenizer.from_pretrained(
            job_checkpoint(spec.base_model, settings)[1]["tokenizer_path"]
        )
    return AutoTokenizer.from_pretrained(locate(spec.base_model.name, settings.models_dir))


def load_training_data(spec: JobSpec, settings: Settings, uploads: UploadLookup | None) -> Any:
    from thaw.data import build_datasets
    from thaw.data.info import IMAGENET_MEAN, IMAGENET_STD

    hp = spec.hyperparameters
    ref = spec.dataset
    modality = modality_of(spec, settings)
    validation: Any = None
    validation_format = None
    if isinstance(ref.validation, ValidationSplit):
        validation = ref.validation.split
    elif ref.validation is not None:
        validation = source_path(ref.validation, settings, uploads, ("dataset", "validation"))
        validation_format = ref.validation.format
    data = build_datasets(
        source_path(ref, settings, uploads, ("dataset",)),
        ref.format,
        modality=modality,  # type: ignore[arg-type]
        validation=validation,
        validation_format=validation_format,
        seed=hp.seed,
        image_size=hp.image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        augment=hp.augment if hp.augment != "none" else False,
        tokenizer=tokenizer_for(spec, settings) if modality == "text" else None,
        max_length=hp.max_length,
    )
    return data
