"""Classes and training size of a spec's dataset, without loading its examples."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from thaw.data.info import DatasetInfo
from thaw.errors import SpecError
from thaw.paths import path_under
from thaw.spec import DatasetRef, DatasetSource, ValidationSplit

if TYPE_CHECKING:
    from thaw.settings import Settings
    from thaw.store import Dataset


@dataclass(frozen=True)
class DataShape:
    """What the planner needs to know of a dataset: its classes and its training and
    validation sizes."""

    classes: list[str]
    num_train: int
    num_val: int = 0

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, math.ceil(self.num_train / batch_size))

    def optimizer_steps_per_epoch(self, batch_size: int, accumulation: int) -> int:
        """Optimizer steps: every ``accumulation`` batches, and the epoch's last one."""
        return math.ceil(self.steps_per_epoch(batch_size) / accumulation)


UploadLookup = Callable[[str], "Dataset | None"]
"""An upload record by id, among the caller's own uploads."""


def describe_source(
    source: DatasetSource, settings: Settings, uploads: UploadLookup | None, loc: tuple
) -> DatasetInfo:
    from thaw.data.info import synthetic_info

    if source.synthetic is not None:
        return synthetic_info(source.synthetic.num_classes, source.synthetic.num_examples)
    if source.id is not None:
        return dataset_info(find_upload(source.id, uploads, loc))
    from thaw.data import inspect_path

    return inspect_path(
        dataset_path(source, settings, loc),
        source.format,
        settings,
        loc=(*loc, "path"),
        within=dataset_roots(settings),
    )


def dataset_path(source: DatasetSource, settings: Settings, loc: tuple) -> Path:
    """A ``{"path"}`` source resolved under THAW_DATASETS_DIR, refusing escapes."""
    assert source.path is not None
    return path_under(settings.datasets_dir, source.path, (*loc, "path"), "dataset path")


def dataset_roots(settings: Settings) -> tuple[Path, ...]:
    """Where a dataset's files may lie: THAW_DATASETS_DIR, the uploads folder, and the local
    cache of uploads kept in an object store."""
    return (settings.datasets_dir, settings.uploads_dir, upload_cache_dir(settings))


def upload_cache_dir(settings: Settings) -> Path:
    """A worker's read-through copies of uploads kept in the object store."""
    return settings.data_dir / "cache" / "datasets"


def dataset_info(record: Dataset) -> DatasetInfo:
    """What a planner needs of a stored upload, from its record, without touching its files."""
    extra = record.extra
    return DatasetInfo(
        format=record.format,  # type: ignore[arg-type]
        classes=list(record.classes),
        class_counts=dict(record.class_counts),
        num_examples=record.num_examples,
        has_explicit_val=bool(extra.get("has_explicit_val", False)),
        val_class_counts={str(k): int(v) for k, v in (extra.get("val_class_counts") or {}).items()},
    )


def find_upload(dataset_id: str, uploads: UploadLookup | None, loc: tuple) -> Dataset:
    record = uploads(dataset_id) if uploads is not None else None
    if record is None:
        raise SpecError(
            (*loc, "id"), f"no dataset {dataset_id!r}", "upload it with POST /v1/datasets"
        )
    return record


def data_shape(
    ref: DatasetRef, settings: Settings, uploads: UploadLookup | None = None
) -> DataShape:
    from thaw.data.info import count_examples

    info = describe_source(ref, settings, uploads, ("dataset",))
    validation: float | DatasetInfo | None = None
    if isinstance(ref.validation, ValidationSplit):
        validation = ref.validation.split
    elif ref.validation is not None:
        validation = describe_source(ref.validation, settings, uploads, ("dataset", "validation"))
    if len(info.classes) > settings.max_classes:
        raise SpecError(
            ("dataset",),
            f"the dataset has {len(info.classes)} classes; at most {settings.max_classes} "
            "(THAW_MAX_CLASSES)",
            "use a dataset with fewer classes",
        )
    counts = count_examples(info, validation)
    return DataShape(classes=list(info.classes), num_train=counts.train, num_val=counts.val)
