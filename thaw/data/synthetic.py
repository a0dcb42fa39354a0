"""Deterministic, learnable random datasets for smoke tests, plans and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from thaw.data.errors import DatasetError

_KEYWORDS_PER_CLASS = 8
_DEFAULT_VOCAB = 1000


def synthetic_labels(num_classes: int, num_examples: int, seed: int) -> list[int]:
    """Balanced labels (class counts differ by at most one) in a seeded order."""
    if num_classes < 2 or num_examples < num_classes:
        raise DatasetError(
            f"a synthetic dataset of {num_examples} examples cannot cover {num_classes} "
            "classes; use at least 2 classes and at least one example per class",
            code="too_few_examples",
        )
    labels = [i % num_classes for i in range(num_examples)]
    random.Random(seed).shuffle(labels)
    return labels


class _Synthetic(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, labels: Sequence[int], indices: Sequence[int] | None, seed: int):
        all_labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.arange(len(all_labels)) if indices is None else np.asarray(indices)
        self.labels = all_labels[self.indices]
        self._seed_base = (seed % 2**31) * 2**32

    def __len__(self) -> int:
        return len(self.indices)

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self._seed_base + int(self.indices[index]))


class SyntheticImageDataset(_Synthetic):
    """Items are ``(float tensor [3, size, size], class)``: a smooth class pattern plus noise.

    Each class pattern is a 4x4 grid upsampled per item: holding every class at full size
    would take classes x 3 x size^2 floats per dataset (12 GiB for 1000 classes at 1024 px).
    """

    def __init__(
        self,
        num_classes: int,
        labels: Sequence[int],
        *,
        image_size: int,
        seed: int,
        indices: Sequence[int] | None = None,
    ):
        super().__init__(labels, indices, seed)
        g = torch.Generator().manual_seed(seed)
        self.coarse = torch.randn(num_classes, 3, 4, 4, generator=g)
        self.image_size = image_size

    def prototype(self, label: int) -> torch.Tensor:
        size = (self.image_size, self.image_size)
        pattern = self.coarse[label : label + 1]
        return F.interpolate(pattern, size=size, mode="bilinear", align_corners=False)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.labels[index])
        size = (3, self.image_size, self.image_size)
        noise = torch.randn(size, generator=self._generator(index))
        return noise.add_(self.prototype(label)), label


class SyntheticTextDataset(_Synthetic):
    """Items are ``(int32 token ids, class)``: half the tokens come from class keywords."""

    def __init__(
        self,
        num_classes: int,
        labels: Sequence[int],
        *,
        vocab: tuple[int, int],
        length: int,
        seed: int,
        prefix: Sequence[int] = (),
        suffix: Sequence[int] = (),
        indices: Sequence[int] | None = None,
    ):
        super().__init__(labels, indices, seed)
        low, high = vocab
        if high - low < 2:
            raise ValueError("synthetic text needs a vocabulary of at least two ordinary tokens")
        g = torch.Generator().manual_seed(seed)
        self.keywords = torch.randint(
            low, high, (num_classes, _KEYWORDS_PER_CLASS), generator=g, dtype=torch.int32
        )
        self.vocab = (low, high)
        self.length = max(1, length)
        self.prefix = torch.tensor(list(prefix), dtype=torch.int32)
        self.suffix = torch.tensor(list(suffix), dtype=torch.int32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.labels[index])
        g = self._generator(index)
        noise = torch.randint(*self.vocab, (self.length,), generator=g, dtype=torch.int32)
        picks = torch.randint(0, _KEYWORDS_PER_CLASS, (self.length,), generator=g)
        use_keyword = torch.rand(self.length, generator=g) < 0.5
        body = torch.where(use_keyword, self.keywords[label][picks], noise)
        return torch.cat([self.prefix, body, self.suffix]), label


def synthetic_dataset(
    num_classes: int,
    num_examples: int,
    modality: Literal["image", "text"],
    *,
    image_size: int = 32,
    seed: int = 0,
    vocab_size: int | None = None,
    tokenizer: Any = None,
    max_length: int = 32,
    indices: Sequence[int] | None = None,
) -> SyntheticImageDataset | SyntheticTextDataset:
    """A synthetic dataset; the same arguments give the same items.

    Text ids avoid the tokenizer's special ids and, with a tokenizer, are wrapped in its
    CLS/SEP (or BOS/EOS) tokens so sequences are exactly ``max_length`` long.
    ``indices`` selects a subset of the examples (as a split does).
    """
    labels = synthetic_labels(num_classes, num_examples, seed)
    if modality == "image":
        return SyntheticImageDataset(
            num_classes, labels, image_size=image_size, seed=seed, indices=indices
        )
    if modality != "text":
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    prefix, suffix, low, high = _text_vocab(tokenizer, vocab_size)
    return SyntheticTextDataset(
        num_classes,
        labels,
        vocab=(low, high),
        length=max_length - len(prefix) - len(suffix),
        seed=seed,
        prefix=prefix,
        suffix=suffix,
        indices=indices,
    )


def _text_vocab(tokenizer: Any, vocab_size: int | None) -> tuple[list[int], list[int], int, int]:
    if tokenizer is None:
        return [], [], 1, vocab_size or _DEFAULT_VOCAB
    size = vocab_size or len(tokenizer)
    special = [int(i) for i in getattr(tokenizer, "all_special_ids", [])]
    low = max((i for i in special if i < size // 2), default=-1) + 1
    high = min((i for i in special if i >= size // 2), default=size)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    prefix = [int(start)] if start is not None else []
    suffix = [int(end)] if end is not None else []
    return prefix, suffix, low, high
