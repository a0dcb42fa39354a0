"""Listing of an image folder dataset: class folders, optionally under train/ and val/."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from thaw.data.errors import DatasetError
from thaw.data.info import DatasetInfo, counts_in_order, sort_labels
from thaw.data.junk import is_junk_name
from thaw.paths import containing_root, is_inside

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


@dataclass(frozen=True)
class ImageSample:
    path: str
    label: str


@dataclass(frozen=True)
class ImageFolderListing:
    """Every image of a folder dataset; ``path`` is relative to ``root``, with ``/``."""

    root: Path
    classes: list[str]
    train: list[ImageSample]
    val: list[ImageSample]
    has_explicit_val: bool

    @property
    def samples(self) -> list[ImageSample]:
        return self.train + self.val

    def info(self) -> DatasetInfo:
        counts = _count(self.samples)
        return DatasetInfo(
            format="image_folder",
            classes=list(self.classes),
            class_counts=counts_in_order(self.classes, counts),
            num_examples=len(self.train) + len(self.val),
            has_explicit_val=self.has_explicit_val,
            val_class_counts=counts_in_order(self.classes, _count(self.val))
            if self.has_explicit_val
            else {},
        )


def list_image_folder(
    root: str | os.PathLike[str], *, within: Sequence[str | os.PathLike[str]] = ()
) -> ImageFolderListing:
    """List images without opening them; raises DatasetError for a malformed layout.

    Every folder and file listed must resolve inside the one of ``within`` that holds
    ``root`` (the root itself when none does): a link out of it is refused, and nothing
    beyond it is listed, even in an error."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(
            f"image folder '{base.name}' does not exist or is not a folder; "
            "give a folder with one subfolder per class",
            code="not_found",
        )
    scan = _Scan(base, containing_root(base, within))
    names = {d.name for d in scan.subdirs(base, "")}
    explicit = "train" in names and names <= {"train", "val"}
    if explicit:
        train = scan.split("train")
        val = scan.split("val") if "val" in names else []
    else:
        train = scan.split("")
        val = []
    if not train:
        raise DatasetError(
            "the dataset holds no images; put images in one subfolder per class "
            f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})",
            code="empty_dataset",
        )
    classes = sort_labels(s.label for s in train)
    if len(classes) < 2:
        where = "train/" if explicit else "the dataset folder"
        found = f"only '{classes[0]}'" if classes else "none"
        raise DatasetError(
            f"a classifier needs at least two classes, found {found}; "
            f"add one subfolder per class under {where}",
            code="too_few_classes",
        )
    unknown = sorted({s.label for s in val} - set(classes))
    if unknown:
        raise DatasetError(
            f"val/ has class folders that train/ lacks: {', '.join(unknown)}; "
            "use the same class folder names in train/ and val/",
            code="unknown_label",
        )
    return ImageFolderListing(base, classes, train, val, explicit and "val" in names)


@dataclass(frozen=True)
class _Scan:
    base: Path
    limit: Path

    def split(self, split: str) -> list[ImageSample]:
        split_root = self.base / split if split else self.base
        prefix = f"{split}/" if split else ""
        samples: list[ImageSample] = []
        for class_dir in self.subdirs(split_root, prefix):
            found = [
                ImageSample(f"{prefix}{class_dir.name}/{rel}", class_dir.name)
                for rel in self.image_files(class_dir, f"{prefix}{class_dir.name}/")
            ]
            if not found:
                raise DatasetError(
                    f"class folder '{prefix}{class_dir.name}' has no images; "
                    "add images or remove the folder",
                    code="empty_dataset",
                    path=f"{prefix}{class_dir.name}",
                )
            samples.extend(found)
        return samples

    def image_files(self, class_dir: Path, shown_prefix: str) -> list[str]:
        # os.walk does not enter linked folders below class_dir; linked files are checked.
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not is_junk_name(d))
            rel_dir = Path(dirpath).relative_to(class_dir).as_posix()
            for name in sorted(filenames):
                if is_junk_name(name):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                self.check_inside(Path(dirpath) / name, f"{shown_prefix}{rel}", "file")
                if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                    raise DatasetError(
                        f"'{shown_prefix}{rel}' is not an image file this server reads; "
                        f"remove it or convert it to one of {', '.join(sorted(IMAGE_EXTENSIONS))}",
                        code="unsupported_file",
                        path=f"{shown_prefix}{rel}",
                    )
                files.append(rel)
        return files

    def subdirs(self, path: Path, shown_prefix: str) -> list[Path]:
        found = sorted(
            (p for p in path.iterdir() if p.is_dir() and not is_junk_name(p.name)),
            key=lambda p: p.name,
        )
        for folder in found:
            self.check_inside(folder, f"{shown_prefix}{folder.name}", "folder")
        return found

    def check_inside(self, path: Path, shown: str, what: str) -> None:
        if path.is_symlink() and not is_inside(path.resolve(), self.limit):
            raise DatasetError(
                f"{what} '{shown}' is a link that leaves the datasets folder; "
                "copy its contents into the dataset instead of linking to them",
                code="path_outside_root",
                path=shown,
            )


def _count(samples: list[ImageSample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.label] = counts.get(s.label, 0) + 1
    return counts
