"""Train and validation torch datasets for a job, from a folder, a text file or synthetic data."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from thaw.data.errors import DatasetError
from thaw.data.folder import ImageSample, list_image_folder
from thaw.data.info import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Modality,
    sort_labels,
    synthetic_class_names,
)
from thaw.data.inspection import infer_format
from thaw.data.rows import TextRows, read_text_rows
from thaw.data.split import stratified_split
from thaw.settings import DEFAULTS, Settings

if TYPE_CHECKING:
    from torch.utils.data import Dataset

DEFAULT_SPLIT = 0.2

PathLike = str | os.PathLike[str]


class SyntheticSource(Protocol):
    """Anything with these two fields, such as the job spec's ``dataset.synthetic``."""

    num_classes: int
    num_examples: int


@dataclass(frozen=True)
class Synthetic:
    num_classes: int = 10
    num_examples: int = 256


@dataclass
class TrainingData:
    """What a trainer needs: datasets, class names, and for text a padding collate function.

    Image items are ``(tensor [3, S, S], class)``; text batches from ``collate_fn`` are
    ``({"input_ids", "attention_mask"}, labels)``.
    """

    train: Dataset[Any]
    val: Dataset[Any]
    classes: list[str]
    modality: Modality
    collate_fn: Callable[[Any], Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_datasets(
    source: PathLike | SyntheticSource,
    format: str | None = None,
    *,
    modality: Modality,
    classes: Sequence[str] | None = None,
    validation: float | PathLike | None = None,
    validation_format: str | None = None,
    seed: int = 0,
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    augment: bool | str = False,
    tokenizer: Any = None,
    max_length: int = 128,
    within: Sequence[PathLike] = (),
    limits: Settings = DEFAULTS,
) -> TrainingData:
    """Build the train and validation datasets of a job.

    ``validation``: None uses an image folder's ``val/`` when present, else a 0.2 split;
    a float is a seeded stratified split of the training part; a path is a separate
    dataset of the same format. ``classes`` fixes the label order (every label must be in
    it); otherwise classes are the sorted labels found. ``augment`` (``"flip"`` or True: a
    random horizontal flip; ``"standard"``: random resized crop and flip) applies to
    training images only. Text needs a Hugging Face ``tokenizer``. Image folders may link
    only inside ``within`` (``list_image_folder``). Images and labels are held to the
    limits of ``limits`` (THAW_MAX_IMAGE_PIXELS, THAW_MAX_CLASSES).
    """
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    if modality == "text" and tokenizer is None and isinstance(source, str | os.PathLike):
        raise ValueError("text datasets need a tokenizer")
    if not isinstance(source, str | os.PathLike):
        return _synthetic(
            source, modality, classes, validation, seed, image_size, tokenizer, max_length
        )
    fmt = format or infer_format(source)
    _check_modality(fmt, modality)
    if fmt == "image_folder":
        return _images(
            source, classes, validation, seed, image_size, mean, std, augment, within, limits
        )
    return _text(
        source, fmt, classes, validation, validation_format, seed, tokenizer, max_length, limits
    )


def _images(
    source: PathLike,
    classes: Sequence[str] | None,
    validation: float | PathLike | None,
    seed: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: bool | str,
    within: Sequence[PathLike],
    limits: Settings,
) -> TrainingData:
    from thaw.data.images import ImageFolderDataset  # torch and PIL load once data is built

    listing = list_image_folder(source, within=within)
    class_list = _class_list(classes, listing.classes)
    index = {name: i for i, name in enumerate(class_list)}
    train: list[ImageSample] = listing.train
    val_root = listing.root
    if validation is None and listing.has_explicit_val:
        val = listing.val
    elif validation is None or isinstance(validation, float | int):
        fraction = DEFAULT_SPLIT if validation is None else float(validation)
        train_idx, val_idx = _split([index[s.label] for s in train], fraction, seed)
        train, val = [train[i] for i in train_idx], [train[i] for i in val_idx]
    else:
        other = list_image_folder(validation, within=within)
        val, val_root = other.samples, other.root
        _check_known({s.label for s in val}, index, "the validation dataset")

    def dataset(root: Path, samples: list[ImageSample], flip: bool | str) -> ImageFolderDataset:
        return ImageFolderDataset(
            root,
            [s.path for s in samples],
            [index[s.label] for s in samples],
            image_size=image_size,
            max_image_pixels=limits.max_image_pixels,
            mean=mean,
            std=std,
            augment=flip,
        )

    return TrainingData(
        train=dataset(listing.root, train, augment),
        val=dataset(val_root, val, False),
        classes=class_list,
        modality="image",
    )


def _text(
    source: PathLike,
    fmt: str,
    classes: Sequence[str] | None,
    validation: float | PathLike | None,
    validation_format: str | None,
    seed: int,
    tokenizer: Any,
    max_length: int,
    limits: Settings,
) -> TrainingData:
    from thaw.data.text import PadCollate, pad_token_id, tokenize_dataset  # torch on use

    rows = read_text_rows(source, fmt, max_classes=limits.max_classes)
    class_list = _class_list(classes, sort_labels(rows.labels))
    index = {name: i for i, name in enumerate(class_list)}
    labels = [index[label] for label in rows.labels]
    if validation is None or isinstance(validation, float | int):
        fraction = DEFAULT_SPLIT if validation is None else float(validation)
        train_idx, val_idx = _split(labels, fraction, seed)
        train = TextRows([rows.texts[i] for i in train_idx], [rows.labels[i] for i in train_idx])
        val = TextRows([rows.texts[i] for i in val_idx], [rows.labels[i] for i in val_idx])
    else:
        train = rows
        val_fmt = validation_format or infer_format(validation)
        _check_modality(val_fmt, "text")
        val = read_text_rows(validation, val_fmt, max_classes=limits.max_classes)
        _check_known(set(val.labels), index, "the validation dataset")

    def dataset(part: TextRows) -> Dataset[Any]:
        return tokenize_dataset(part.texts, [index[x] for x in part.labels], tokenizer, max_length)

    return TrainingData(
        train=dataset(train),
        val=dataset(val),
        classes=class_list,
        modality="text",
        collate_fn=PadCollate(pad_token_id(tokenizer)),
    )


def _synthetic(
    source: SyntheticSource,
    modality: Modality,
    classes: Sequence[str] | None,
    validation: float | PathLike | None,
    seed: int,
    image_size: int,
    tokenizer: Any,
    max_length: int,
) -> TrainingData:
    from thaw.data.synthetic import synthetic_dataset, synthetic_labels  # torch on use
    from thaw.data.text import PadCollate, pad_token_id

    if validation is not None and not isinstance(validation, float | int):
        raise DatasetError(
            "a synthetic dataset is validated on a split of itself; use "
            "'validation': {'split': 0.2} or leave it out",
            code="bad_format",
        )
    k, n = source.num_classes, source.num_examples
    if classes is not None and len(classes) != k:
        raise DatasetError(
            f"{len(classes)} class names were given for a synthetic dataset of {k} classes; "
            "give one name per class",
            code="unknown_label",
        )
    fraction = DEFAULT_SPLIT if validation is None else float(validation)
    train_idx, val_idx = _split(synthetic_labels(k, n, seed), fraction, seed)

    def dataset(indices: list[int]) -> Dataset[Any]:
        return synthetic_dataset(
            k,
            n,
            modality,
            image_size=image_size,
            seed=seed,
            tokenizer=tokenizer,
            max_length=max_length,
            indices=indices,
        )

    return TrainingData(
        train=dataset(train_idx),
        val=dataset(val_idx),
        classes=list(classes) if classes is not None else synthetic_class_names(k),
        modality=modality,
        collate_fn=PadCollate(pad_token_id(tokenizer)) if modality == "text" else None,
    )


def _split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    train, val = stratified_split(labels, fraction, seed)
    if not train or not val:
        raise DatasetError(
            f"a {fraction:g} validation split of {len(labels)} examples leaves "
            f"{'no training' if not train else 'no validation'} examples; add examples "
            "(at least two in some class) or give a separate validation dataset",
            code="too_few_examples",
        )
    return train, val


def _class_list(explicit: Sequence[str] | None, found: Sequence[str]) -> list[str]:
    if explicit is None:
        return list(found)
    _check_known(set(found), {name: i for i, name in enumerate(explicit)}, "the dataset")
    return list(explicit)


def _check_known(labels: set[str], index: dict[str, int], where: str) -> None:
    unknown = sorted(labels - index.keys())
    if unknown:
        shown = ", ".join(repr(x) for x in unknown[:10])
        raise DatasetError(
            f"{where} has labels the model does not know: {shown}; use only the classes "
            f"{', '.join(repr(x) for x in list(index)[:20])}",
            code="unknown_label",
        )


def _check_modality(fmt: str, modality: Modality) -> None:
    expected = {"image_folder": "image", "csv": "text", "jsonl": "text"}.get(fmt)
    if expected is None:
        raise DatasetError(
            f"dataset format '{fmt}' is not supported; use image_folder, csv or jsonl",
            code="bad_format",
        )
    if expected != modality:
        raise DatasetError(
            f"a '{fmt}' dataset holds {expected}s but the model takes {modality}s; "
            f"pick a {modality} model or a {modality} dataset",
            code="bad_format",
        )
