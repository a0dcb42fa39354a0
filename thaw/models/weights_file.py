"""Initialize from a local weights file: safetensors checked key by key against the model,
or (only where THAW_ALLOW_PICKLE_WEIGHTS allows it) a ``.bin`` read by torch's
``weights_only`` loader, never plain pickle."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from thaw.errors import ModelError

_LOC = ("base_model", "weights_file")


def check_weights_file(
    model: nn.Module,
    path: Path,
    heads: str | Sequence[str],
    loc: Sequence[str | int] = _LOC,
) -> list[str]:
    """Compare the file's tensors with the model; returns the head keys that will be
    re-initialized. For safetensors only the header is read, cheap enough for submit time."""
    if not path.is_file():
        missing = f"weights file {path.name!r} not found"
        raise ModelError(loc, missing, "upload it to THAW_MODELS_DIR")
    prefixes = tuple(f"{h}." for h in ([heads] if isinstance(heads, str) else heads))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = _shapes(path, loc)
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (first: {', '.join(unexpected[:5])})")
        raise ModelError(
            loc,
            f"weights file {path.name!r} does not fit the model: " + "; ".join(parts),
            "save the file from the same architecture with model.state_dict()",
        )
    reinit = []
    for key, shape in expected.items():
        if found[key] == shape:
            continue
        if key.startswith(prefixes):
            reinit.append(key)
            continue
        raise ModelError(
            loc,
            f"weights file {path.name!r}: {key} has shape {list(found[key])}, "
            f"the model expects {list(shape)}",
            "save the file from the same architecture",
        )
    return reinit


def load_weights_file(
    model: nn.Module,
    path: Path,
    heads: str | Sequence[str],
    loc: Sequence[str | int] = _LOC,
) -> list[str]:
    """Load the file into ``model``; a head of another width keeps its fresh initialization."""
    reinit = check_weights_file(model, path, heads, loc)
    state = _read(path, loc)
    for key in reinit:
        del state[key]
    model.load_state_dict(state, strict=not reinit)
    return reinit


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


def _shapes(path: Path, loc: Sequence[str | int]) -> dict[str, tuple[int, ...]]:
    if not _is_safetensors(path):
        return {k: tuple(v.shape) for k, v in _read(path, loc).items()}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:
        raise ModelError(loc, f"{path.name!r} is not a safetensors file: {exc}") from exc


def _read(path: Path, loc: Sequence[str | int]) -> dict[str, Any]:
    if _is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelError(loc, f"{path.name!r} cannot be read as tensors only: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelError(loc, f"{path.name!r} holds no state dict")
    return state
