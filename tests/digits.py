"""Test helper: scikit-learn's 8x8 digits written as an image folder of 32x32 RGB PNGs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digits_folder(root: Path, per_class: int | None = None, size: int = 32) -> Path:
    """Write ``root/<digit>/<index>.png``, every image or the first ``per_class`` of each."""
    digits = load_digits()
    written = dict.fromkeys(range(10), 0)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = int(label)
        if per_class is not None and written[label] >= per_class:
            continue
        gray = np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray).resize((size, size), Image.Resampling.NEAREST)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(folder / f"{index:04d}.png")
        written[label] += 1
    return root


def digit_counts(per_class: int | None = None) -> dict[str, int]:
    """Images per class that ``write_digits_folder`` writes."""
    counts = np.bincount(load_digits().target, minlength=10)
    if per_class is not None:
        counts = np.minimum(counts, per_class)
    return {str(d): int(c) for d, c in enumerate(counts)}


def zip_folder(folder: Path, zip_path: Path, top: str | None = None) -> Path:
    """Zip the files under ``folder``, optionally inside a single top-level folder ``top``."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder).as_posix()
                zf.write(path, f"{top}/{rel}" if top else rel)
    return zip_path
