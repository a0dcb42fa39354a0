"""Datasets: safe upload extraction, inspection, and torch datasets for training.

Importing this package does not import torch, PIL or transformers; the torch dataset
classes load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from thaw.data.archive import extract_archive
from thaw.data.build import Synthetic, SyntheticSource, TrainingData, build_datasets
from thaw.data.errors import DatasetError, ImageDecodeError
from thaw.data.folder import IMAGE_EXTENSIONS, ImageFolderListing, list_image_folder
from thaw.data.info import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetInfo,
    ExampleCounts,
    count_examples,
    synthetic_info,
)
from thaw.data.inspection import (
    infer_format,
    inspect_dataset,
    inspect_image_folder,
    inspect_path,
    inspect_text_file,
    upload_kind,
)
from thaw.data.rows import TextRows, read_text_rows
from thaw.data.split import stratified_split

if TYPE_CHECKING:
    from thaw.data.images import ImageFolderDataset
    from thaw.data.synthetic import SyntheticImageDataset, SyntheticTextDataset, synthetic_dataset
    from thaw.data.text import PadCollate, TokenizedTextDataset

_LAZY = {
    "ImageFolderDataset": "thaw.data.images",
    "SyntheticImageDataset": "thaw.data.synthetic",
    "SyntheticTextDataset": "thaw.data.synthetic",
    "synthetic_dataset": "thaw.data.synthetic",
    "PadCollate": "thaw.data.text",
    "TokenizedTextDataset": "thaw.data.text",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'thaw.data' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "DatasetInfo",
    "ExampleCounts",
    "ImageDecodeError",
    "ImageFolderDataset",
    "ImageFolderListing",
    "PadCollate",
    "Synthetic",
    "SyntheticImageDataset",
    "SyntheticSource",
    "SyntheticTextDataset",
    "TextRows",
    "TokenizedTextDataset",
    "TrainingData",
    "build_datasets",
    "count_examples",
    "extract_archive",
    "infer_format",
    "inspect_dataset",
    "inspect_image_folder",
    "inspect_path",
    "inspect_text_file",
    "list_image_folder",
    "read_text_rows",
    "stratified_split",
    "synthetic_dataset",
    "synthetic_info",
    "upload_kind",
]
