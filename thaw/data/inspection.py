"""Validation and metadata of a dataset before it is stored or trained on."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from thaw.data.archive import shown_name
from thaw.data.errors import DatasetError, ImageDecodeError
from thaw.data.folder import list_image_folder
from thaw.data.images import check_pixels
from thaw.data.info import DatasetInfo
from thaw.data.rows import inspect_rows
from thaw.settings import DEFAULTS, Settings

UploadKind = Literal["archive", "csv", "jsonl"]
_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


def inspect_image_folder(
    root: str | os.PathLike[str],
    *,
    decode: bool = True,
    max_image_pixels: int | None = None,
    max_dataset_pixels: int | None = None,
    max_classes: int | None = None,
    within: Sequence[str | os.PathLike[str]] = (),
) -> DatasetInfo:
    """Check an image folder's layout, its class count and (with ``decode``) that every
    image decodes within the pixel limits (the built-in ones by default). Links must stay inside
    ``within`` (``list_image_folder``)."""
    listing = list_image_folder(root, within=within)
    settings = DEFAULTS
    limit = max_classes or settings.max_classes
    if len(listing.classes) > limit:
        raise DatasetError(
            f"the image folder has {len(listing.classes)} class folders; at most {limit} "
            "classes (THAW_MAX_CLASSES); merge classes or split the dataset",
            code="too_many_classes",
        )
    if decode:
        check_images_decode(
            listing.root,
            [s.path for s in listing.samples],
            max_image_pixels=max_image_pixels or settings.max_image_pixels,
            max_dataset_pixels=max_dataset_pixels or settings.max_dataset_pixels,
        )
    return listing.info()


def inspect_text_file(
    path: str | os.PathLike[str],
    format: Literal["csv", "jsonl"],
    *,
    max_classes: int | None = None,
    shown_as: str | None = None,
) -> DatasetInfo:
    """Check a CSV or JSON Lines file of ``text``/``label`` rows and count its labels."""
    return inspect_rows(path, format, max_classes=max_classes, shown_as=shown_as)


def inspect_dataset(
    path: str | os.PathLike[str],
    format: str,
    settings: Settings = DEFAULTS,
    *,
    decode: bool = True,
    within: Sequence[str | os.PathLike[str]] = (),
) -> DatasetInfo:
    """Dispatch on ``format``: ``image_folder``, ``csv`` or ``jsonl``, within the limits
    of ``settings``."""
    if format == "image_folder":
        return inspect_image_folder(
            path,
            decode=decode,
            max_image_pixels=settings.max_image_pixels,
            max_dataset_pixels=settings.max_dataset_pixels,
            max_classes=settings.max_classes,
            within=within,
        )
    if format in ("csv", "jsonl"):
        return inspect_rows(path, format, max_classes=settings.max_classes)
    raise DatasetError(
        f"dataset format '{format}' is not supported; use image_folder, csv or jsonl",
        code="bad_format",
    )


def infer_format(path: str | os.PathLike[str]) -> str:
    """``image_folder`` for a folder, ``csv`` or ``jsonl`` from a file's suffix."""
    p = Path(path)
    if p.is_dir():
        return "image_folder"
    suffix = p.suffix.lower()
    if suffix in (".csv", ".jsonl"):
        return suffix[1:]
    raise DatasetError(
        f"cannot tell the format of '{p.name}'; give a folder, a .csv or a .jsonl file, "
        "or set 'format'",
        code="bad_format",
    )


def inspect_path(
    path: str | os.PathLike[str],
    format: str | None = None,
    settings: Settings = DEFAULTS,
    *,
    loc: Sequence[str | int] = (),
    decode: bool = False,
    within: Sequence[str | os.PathLike[str]] = (),
) -> DatasetInfo:
    """Inspect a server-side dataset named in a spec; ``format`` None infers it.

    Images are only listed unless ``decode``; a bad image then surfaces while training.
    A DatasetError raised here carries ``loc``. Links must stay inside ``within``.
    """
    try:
        return inspect_dataset(
            path, format or infer_format(path), settings, decode=decode, within=within
        )
    except DatasetError as exc:
        if not exc.loc:
            exc.loc = tuple(loc)
        raise


def upload_kind(filename: str) -> UploadKind:
    """What an uploaded file is, from its name: an image-folder archive, CSV or JSON Lines."""
    lower = filename.lower()
    if lower.endswith(_ARCHIVE_SUFFIXES):
        return "archive"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".jsonl"):
        return "jsonl"
    raise DatasetError(
        f"cannot tell what '{filename}' holds; upload a .zip, .tar.gz or .tgz image folder, "
        "or a .csv or .jsonl file with 'text' and 'label'",
        code="bad_format",
    )


def check_images_decode(
    root: Path,
    relative_paths: list[str],
    *,
    max_image_pixels: int,
    max_dataset_pixels: int,
    workers: int = 8,
) -> None:
    """Raise ImageDecodeError naming the first image (in the given order) that fails.

    Every image's size is read from its header before anything is decoded: one over
    ``max_image_pixels``, or all of them together over ``max_dataset_pixels``, is refused."""
    sizes = [_header_pixels(root, rel, max_image_pixels) for rel in relative_paths]
    total = sum(sizes)
    if total > max_dataset_pixels:
        raise DatasetError(
            f"the images hold {total} pixels in all; at most {max_dataset_pixels} "
            "(THAW_MAX_DATASET_PIXELS); downscale them or upload fewer",
            code="images_too_large",
        )
    threads = max(1, min(workers, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        problems = pool.map(lambda rel: _decode_problem(root, rel), relative_paths)
        for rel, problem in zip(relative_paths, problems, strict=True):
            if problem is not None:
                pool.shutdown(cancel_futures=True)
                raise _undecodable(rel, problem)


def _undecodable(rel: str, problem: str) -> ImageDecodeError:
    shown = shown_name(rel)
    return ImageDecodeError(
        f"image '{shown}' cannot be decoded ({problem}); remove it or re-encode it as PNG or JPEG",
        path=shown,
    )


def _header_pixels(root: Path, rel: str, limit: int) -> int:
    """Width x height from the image's header, without decoding it."""
    from PIL import Image

    try:
        with Image.open(root / rel) as im:
            width, height = im.size
    except Exception as exc:
        raise _undecodable(rel, type(exc).__name__) from exc
    check_pixels(width, height, limit, rel)
    return width * height


def _decode_problem(root: Path, rel: str) -> str | None:
    from PIL import Image

    path = root / rel
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except Exception as exc:
        detail = str(exc).replace(str(path), rel)
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return None
