"""Training state for resume, stored without pickle.

Tensors go into a safetensors file under path-like keys (``optimizer/state/0/exp_avg``);
everything else is JSON in the file's metadata, with tags for what JSON lacks:

- ``{"$tensor": key}`` a torch tensor, ``{"$ndarray": key}`` a numpy array
- ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` (non-str or ``$`` keys)
- ``{"$float": "nan" | "inf" | "-inf"}``, ``{"$bytes": base64}``
- ``{"$np": dtype, "value": v}`` a numpy scalar

Plain dicts never have keys starting with ``$``, so decoding is unambiguous.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from thaw.atomic import atomic_path
from thaw.checkpoints.errors import CheckpointNotFound, CorruptCheckpoint
from thaw.checkpoints.tensor_file import save_tensors

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with torch wheels
    np = None  # type: ignore[assignment]

FORMAT = "thaw.training_state"
VERSION = "1"
_META_FORMAT = "thaw.format"
_META_VERSION = "thaw.version"
_META_STATE = "thaw.state"

_TAGS = ("$tensor", "$ndarray", "$tuple", "$dict", "$float", "$bytes", "$np")


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def _key(self, path: str) -> str:
        base = path.lstrip("/") or "root"
        key, n = base, 1
        while key in self.tensors:
            n += 1
            key = f"{base}~{n}"
        return key

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if np is not None and isinstance(value, np.generic):
            return self._encode_numpy_scalar(value, path)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if isinstance(value, torch.Tensor):
            key = self._key(path)
            self.tensors[key] = value
            return {"$tensor": key}
        if np is not None and isinstance(value, np.ndarray):
            key = self._key(path)
            self.tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
            return {"$ndarray": key}
        if isinstance(value, bytes | bytearray):
            return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, f"{path}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{path}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return self._encode_dict(value, path)
        raise TypeError(f"training state at {path or '/'!r}: cannot store {type(value).__name__}")

    def _encode_numpy_scalar(self, value: Any, path: str) -> Any:
        item = value.item()
        if not isinstance(item, bool | int | float):
            raise TypeError(f"training state at {path!r}: cannot store numpy {value.dtype}")
        return {"$np": value.dtype.str, "value": self.encode(item, path)}

    def _encode_dict(self, value: dict[Any, Any], path: str) -> Any:
        plain = all(isinstance(k, str) and not k.startswith("$") for k in value)
        if plain:
            return {k: self.encode(v, f"{path}/{k}") for k, v in value.items()}
        return {
            "$dict": [
                [self.encode(k, f"{path}/key{i}"), self.encode(v, f"{path}/{k}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }


def _decode(node: Any, tensors: Callable[[str], torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    tag = next((k for k in node if k in _TAGS), None)
    if tag is None:
        return {k: _decode(v, tensors) for k, v in node.items()}
    body = node[tag]
    if tag == "$tensor":
        return tensors(body)
    if tag == "$ndarray":
        if np is None:  # pragma: no cover
            raise CorruptCheckpoint("training state holds a numpy array but numpy is missing")
        return tensors(body).numpy()
    if tag == "$tuple":
        return tuple(_decode(v, tensors) for v in body)
    if tag == "$dict":
        return {_decode(k, tensors): _decode(v, tensors) for k, v in body}
    if tag == "$float":
        return float(body)
    if tag == "$bytes":
        return base64.b64decode(body)
    if np is None:  # pragma: no cover
        raise CorruptCheckpoint("training state holds a numpy scalar but numpy is missing")
    return np.dtype(body).type(_decode(node["value"], tensors))


def encode_training_state(state: Any) -> tuple[str, dict[str, torch.Tensor]]:
    """Split a state into its JSON structure and its tensors."""
    encoder = _Encoder()
    tree = encoder.encode(state, "")
    return json.dumps(tree, allow_nan=False, separators=(",", ":")), encoder.tensors


def save_training_state(path: str | Path, state: Any) -> str:
    """Write ``state`` (nested dicts, lists, tuples, scalars, tensors) atomically; the
    file's hex sha256."""
    text, tensors = encode_training_state(state)
    metadata = {_META_FORMAT: FORMAT, _META_VERSION: VERSION, _META_STATE: text, "format": "pt"}
    with atomic_path(path) as tmp:
        return save_tensors(tmp, tensors, metadata)


def load_training_state(path: str | Path) -> Any:
    """Read a state written by :func:`save_training_state`; tensors come back on CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFound(f"no training state at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get(_META_FORMAT) != FORMAT:
                raise CorruptCheckpoint(f"{path.name} is not a Thaw training state")
            if metadata.get(_META_VERSION) != VERSION:
                raise CorruptCheckpoint(
                    f"{path.name} has training state version {metadata.get(_META_VERSION)!r}",
                    f"this Thaw reads version {VERSION}",
                )
            tree = json.loads(metadata[_META_STATE])
            stored = set(f.keys())

            def tensor(key: str) -> torch.Tensor:
                if key not in stored:
                    raise CorruptCheckpoint(f"{path.name} lacks tensor {key!r}")
                return f.get_tensor(key)

            return _decode(tree, tensor)
    except (SafetensorError, json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise CorruptCheckpoint(f"cannot read training state {path.name}: {exc}") from exc
