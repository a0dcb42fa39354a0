"""Turn a spec's dataset reference into train and validation datasets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thaw.data import build_datasets
from thaw.data.info import IMAGENET_MEAN, IMAGENET_STD
from thaw.data.shape import UploadLookup, dataset_path, dataset_roots, find_upload
from thaw.freezing.resolve import meta_model
from thaw.models.job_source import job_checkpoint
from thaw.settings import Settings
from thaw.spec import DatasetSource, JobSpec, ValidationSplit


@dataclass(frozen=True)
class ModelInputs:
    """What the data pipeline needs of the base model: modality, normalization, tokenizer."""

    modality: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    tokenizer_path: str | None


def model_inputs(spec: JobSpec, settings: Settings) -> ModelInputs:
    """Read from the base model's own config (a meta build, no weights) or its job record."""
    ref = spec.base_model
    if ref.source == "job":
        record = job_checkpoint(ref, settings)[1]
        return ModelInputs(
            str(record["modality"]),
            tuple(record.get("mean", IMAGENET_MEAN)),
            tuple(record.get("std", IMAGENET_STD)),
            record.get("tokenizer_path"),
        )
    built, _ = meta_model(ref, 2, settings)
    return ModelInputs(built.modality, built.mean, built.std, built.tokenizer_path)


def source_path(
    source: DatasetSource,
    settings: Settings,
    uploads: UploadLookup | None,
    loc: tuple[str, ...],
) -> Path | Any:
    if source.synthetic is not None:
        return source.synthetic
    if source.id is not None:
        from thaw.upload_cache import upload_path  # the Redis client loads with uploads

        return upload_path(find_upload(source.id, uploads, loc), settings)
    return dataset_path(source, settings, loc)


def tokenizer_for(inputs: ModelInputs) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(inputs.tokenizer_path)


def load_training_data(spec: JobSpec, settings: Settings, uploads: UploadLookup | None) -> Any:
    hp = spec.hyperparameters
    ref = spec.dataset
    inputs = model_inputs(spec, settings)
    modality = inputs.modality
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
        mean=inputs.mean,
        std=inputs.std,
        augment=hp.augment if hp.augment != "none" else False,
        tokenizer=tokenizer_for(inputs) if modality == "text" else None,
        max_length=hp.max_length,
        within=dataset_roots(settings),
        limits=settings,
    )
    return data
