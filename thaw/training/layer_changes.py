"""Which layers differ, bit for bit, from the base weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch

# Compared as integers of the same width: bit for bit (NaN equals NaN, -0.0 differs from
# 0.0), and several times faster than comparing bytes.
_SAME_WIDTH = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def changed_layers(
    current: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]
) -> set[str]:
    """Status-row names (owning module, or the parameter itself at the root) whose own
    tensors, buffers included, differ from ``base``."""
    changed: set[str] = set()
    for key, value in current.items():
        row = key.rpartition(".")[0] or key
        if row not in changed and not same_bits(value.detach().to("cpu"), base[key]):
            changed.add(row)
    return changed


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold the same dtype, shape and bits."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    raw = tensor.contiguous().reshape(-1).view(torch.uint8)
    return raw.view(_SAME_WIDTH.get(tensor.element_size(), torch.uint8))
