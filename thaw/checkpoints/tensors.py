"""Turn tensors into what safetensors can store (CPU, contiguous, no shared storage), and
snapshot a state for a write in the background."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


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


def model_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as a background write needs it: a CPU copy of every tensor, but
    parameters that need no gradient and already live on the CPU are shared, not copied
    (for a frozen backbone, that is nearly the whole model). The caller must not make a
    parameter trainable until the write is done."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {
        key: value.detach() if key in frozen and value.device.type == "cpu" else cpu_snapshot(value)
        for key, value in model.state_dict().items()
    }


def cpu_snapshot(value: Any) -> Any:
    """A copy of a state (dicts, lists, tuples of tensors and plain values) that training
    can no longer change: every tensor detached and copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {k: cpu_snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cpu_snapshot(v) for v in value]
    if isinstance(value, tuple):
        return tuple(cpu_snapshot(v) for v in value)
    return copy.deepcopy(value)


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors (and numpy arrays) inside a state."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, Mapping):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    return int(getattr(value, "nbytes", 0)) if hasattr(value, "dtype") else 0
