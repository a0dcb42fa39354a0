"""Tokenized text classification dataset and its dynamic-padding collate function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

_TOKENIZE_CHUNK = 1024


class TokenizedTextDataset(Dataset[tuple[torch.Tensor, int]]):
    """Items are ``(int32 token ids [length], class index)``; ids live in one flat tensor."""

    def __init__(self, flat_ids: torch.Tensor, offsets: torch.Tensor, labels: Sequence[int]):
        if len(offsets) != len(labels) + 1:
            raise ValueError("offsets must hold one more entry than labels")
        self.flat_ids = flat_ids
        self.offsets = offsets.tolist()
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.flat_ids[self.offsets[index] : self.offsets[index + 1]], int(self.labels[index])


def tokenize_dataset(
    texts: Sequence[str], labels: Sequence[int], tokenizer: Any, max_length: int
) -> TokenizedTextDataset:
    """Tokenize every text once (with special tokens, truncated to ``max_length``)."""
    ids: list[int] = []
    offsets = [0]
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        encoded = tokenizer(
            list(texts[start : start + _TOKENIZE_CHUNK]),
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        for seq in encoded:
            ids.extend(seq)
            offsets.append(offsets[-1] + len(seq))
    flat = torch.tensor(ids, dtype=torch.int32)
    return TokenizedTextDataset(flat, torch.tensor(offsets, dtype=torch.int64), labels)


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its end-of-sequence id, else 0."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


@dataclass(frozen=True)
class PadCollate:
    """Pads a batch to its longest sequence.

    Returns ``({"input_ids": long [B, L], "attention_mask": long [B, L]}, labels long [B])``.
    """

    pad_id: int

    def __call__(
        self, batch: Sequence[tuple[torch.Tensor, int]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        seqs = [item[0] for item in batch]
        lengths = torch.tensor([len(s) for s in seqs])
        input_ids = pad_sequence(seqs, batch_first=True, padding_value=self.pad_id).long()
        mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        labels = torch.tensor([item[1] for item in batch], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask}, labels
