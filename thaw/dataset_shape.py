"""Classes and training size of a spec's dataset, without loading its examples."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from thaw.errors import SpecError
from thaw.paths import resolve_under
from thaw.resolve import DataShape
from thaw.spec import DatasetRef, DatasetSource, ValidationSplit

if TYPE_CHECKING:
    from thaw.data.info import DatasetInfo
    from thaw.settings import Settings

UploadLookup = Callable[[str], "DatasetInfo | None"]


def describe_source(
    source: DatasetSource, settings: Settings, uploads: UploadLookup | None, loc: tuple
) -> DatasetInfo:
    from thaw.data.info import synthetic_info

    if source.synthetic is not None:
        return synthetic_info(source.synthetic.num_classes, source.synthetic.num_examples)
    if source.id is not None:
        info = uploads(source.id) if uploads is not None else None
        if info is None:
            raise SpecError(
                (*loc, "id"), f"no dataset {source.id!r}", "upload it with POST /v1/datasets"
            )
        return info
    assert source.path is not None
    from thaw.data import inspect_path

    path = resolve_under(settings.datasets_dir, source.path, (*loc, "path"), "dataset path")
    return inspect_path(path, source.format, loc=(*loc, "path"))


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
    counts = count_examples(info, validation)
    return DataShape(classes=list(info.classes), num_train=counts.train)
