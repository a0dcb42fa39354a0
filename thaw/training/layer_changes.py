"""Which layers differ, bit for bit, from the base weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def changed_layers(
    current: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]
) -> set[str]:
    """Status-row names (owning module, or the parameter itself at the root) whose own
    tensors, buffers included, differ from ``base``."""
    changed: set[str] = set()
    for key, value in current.items():
        row = key.rpartition(".")[0] or key
        if row not in changed and not _same_bits(value.detach().to("cpu"), base[key]):
            changed.add(row)
    return changed


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(
        a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
    )
