"""Write a safetensors file straight from the tensors' memory, hashing it on the way.

With ``safetensors.torch.save_file`` the sha256 the index records had to read the file
back. Here each tensor's bytes go to the file and to the digest as they are, once. The
bytes are the ones ``save_file`` writes (same header, same order, same padding); tests
hold the two equal.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from thaw.checkpoints.tensors import storable_tensors

# safetensors' dtype names, highest first in the order its writer lays tensors out (the
# widest first, so every tensor stays aligned after an 8-byte-aligned header).
_DTYPES: tuple[tuple[str, torch.dtype], ...] = (
    ("U64", torch.uint64),
    ("I64", torch.int64),
    ("F64", torch.float64),
    ("C64", torch.complex64),
    ("F32", torch.float32),
    ("U32", torch.uint32),
    ("I32", torch.int32),
    ("BF16", torch.bfloat16),
    ("F16", torch.float16),
    ("U16", torch.uint16),
    ("I16", torch.int16),
    ("F8_E5M2FNUZ", torch.float8_e5m2fnuz),
    ("F8_E4M3FNUZ", torch.float8_e4m3fnuz),
    ("F8_E4M3", torch.float8_e4m3fn),
    ("F8_E5M2", torch.float8_e5m2),
    ("I8", torch.int8),
    ("U8", torch.uint8),
    ("BOOL", torch.bool),
)
_NAME = {dtype: name for name, dtype in _DTYPES}
_RANK = {dtype: rank for rank, (_, dtype) in enumerate(_DTYPES)}


def save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None
) -> str:
    """Write ``tensors`` to ``path`` as safetensors and return the file's hex sha256."""
    stored = storable_tensors(tensors)
    for key, tensor in stored.items():
        if tensor.dtype not in _NAME:
            raise TypeError(f"{key!r} has dtype {tensor.dtype}, which safetensors cannot store")
    order = sorted(stored, key=lambda key: (_RANK[stored[key].dtype], key))
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for key in order:
        tensor = stored[key]
        header[key] = {
            "dtype": _NAME[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    digest = hashlib.sha256()
    with open(path, "wb", buffering=0) as f:
        _write(f, len(text).to_bytes(8, "little") + text, digest)
        for key in order:
            tensor = stored[key]
            if tensor.nbytes:
                _write(f, memoryview(tensor.reshape(-1).view(torch.uint8).numpy()), digest)
    return digest.hexdigest()


def _write(f: io.FileIO, data: bytes | memoryview, digest: hashlib._Hash) -> None:
    digest.update(data)
    view = memoryview(data)
    while view:
        view = view[f.write(view) :]
