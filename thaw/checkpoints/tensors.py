"""Turn tensors into what safetensors can store: CPU, contiguous, no shared storage."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def storable_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU contiguous tensors, each owning its whole storage.

    Tied weights (one storage under two names) and views into a larger storage
    are cloned, since safetensors refuses shared tensors.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise TypeError(f"tensor names must be str, got {type(key).__name__}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided:
            raise TypeError(f"{key!r} has layout {value.layout}; only dense tensors are stored")
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in seen or storage.nbytes() != tensor.nbytes or tensor.storage_offset() != 0:
            tensor = tensor.clone()
            ptr = tensor.untyped_storage().data_ptr()
        if tensor.nbytes:
            seen.add(ptr)
        out[key] = tensor
    return out
