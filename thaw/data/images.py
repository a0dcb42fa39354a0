"""Image classification dataset over a listed image folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from thaw.data.archive import shown_name
from thaw.data.errors import DatasetError, ImageDecodeError
from thaw.data.info import IMAGENET_MEAN, IMAGENET_STD
from thaw.settings import DEFAULTS


class PixelStore(Protocol):
    """Where decoded pixels are kept (the decoded-input cache, ``thaw.caching.decoded``)."""

    def get(self, index: int, decode: Callable[[], torch.Tensor]) -> torch.Tensor: ...


class ImageFolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Items are ``(float tensor [3, size, size], class index)``.

    Pixels go PIL -> RGB -> bilinear resize to a square -> uint8 tensor -> augmentation ->
    [0, 1] -> ``(x - mean) / std``. ``augment`` (training only): ``"flip"`` (or True) a
    random horizontal flip, drawn by the sampler when it passes ``(index, flip)`` keys and
    from torch's RNG otherwise; ``"standard"`` (torch's RNG) a random resized crop back to
    ``size`` and a random flip, on the uint8 tensor. With ``decoded`` set (a pixel store,
    ``thaw.caching.inputs.attach_decoded_cache``) each image is decoded once and kept.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        paths: Sequence[str],
        labels: Sequence[int],
        *,
        image_size: int,
        max_image_pixels: int = DEFAULTS.max_image_pixels,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: bool | str = False,
    ):
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.root = os.fspath(root)
        self.relative_paths = np.array(list(paths), dtype=np.str_)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = int(image_size)
        self.max_image_pixels = max_image_pixels
        self.augment = "flip" if augment is True else (augment or "none")
        self._standard = _standard_transform(self.image_size) if augment == "standard" else None
        std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) / std_t
        self.decoded: PixelStore | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, bool]) -> tuple[torch.Tensor, int]:
        """``key``: an index, or ``(index, flip)`` where the sampler draws the flips."""
        index, flip = key if isinstance(key, tuple) else (key, None)
        pixels = self.pixels(index)
        if self._standard is not None:
            pixels = self._standard(pixels)
        elif self.augment == "flip" and (torch.rand(()) < 0.5 if flip is None else flip):
            pixels = pixels.flip(-1)
        x = pixels.to(torch.float32).mul_(self._scale).sub_(self._shift)
        return x, int(self.labels[index])

    def pixels(self, index: int) -> torch.Tensor:
        """The image as uint8 ``[3, size, size]``, from the decoded cache when attached."""
        if self.decoded is None:
            return self.decode(index)
        return self.decoded.get(index, lambda: self.decode(index))

    def decode(self, index: int) -> torch.Tensor:
        rel = str(self.relative_paths[index])
        path = os.path.join(self.root, rel)
        image = load_rgb(path, self.image_size, max_pixels=self.max_image_pixels, shown_path=rel)
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()

    def __getstate__(self) -> dict[str, Any]:
        # The decoded cache is shared with forked workers only; a pickled copy (a spawned
        # worker) decodes on its own.
        return {**self.__dict__, "decoded": None}


def load_rgb(
    path: str, size: int, *, max_pixels: int, shown_path: str | None = None
) -> Image.Image:
    """Decode an image as RGB resized to ``size`` x ``size``; ImageDecodeError if it fails,
    DatasetError if its header says it is over ``max_pixels`` (nothing is decoded)."""
    shown = shown_path or os.path.basename(path)
    try:
        with Image.open(path) as im:
            check_pixels(im.width, im.height, max_pixels, shown)
            rgb = im.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    except DatasetError:
        raise
    except Exception as exc:
        raise ImageDecodeError(
            f"image '{shown_name(shown)}' cannot be decoded ({type(exc).__name__}); remove it "
            "or re-encode it as PNG or JPEG",
            path=shown_name(shown),
        ) from exc
    return rgb


def _standard_transform(size: int):  # type: ignore[no-untyped-def]
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


def check_pixels(width: int, height: int, limit: int, rel: str) -> None:
    """Refuse an image whose header says it holds more than ``limit`` pixels."""
    if width * height > limit:
        shown = shown_name(rel)
        raise DatasetError(
            f"image '{shown}' is {width}x{height} ({width * height} pixels); at most {limit} "
            "(THAW_MAX_IMAGE_PIXELS); downscale it",
            code="image_too_large",
            path=shown,
        )
