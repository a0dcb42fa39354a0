"""The checkpoint writer: the bytes safetensors' own writer produces, and their sha256."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import _TYPES, load_file, save

from thaw.checkpoints.tensor_file import save_tensors


def _every_dtype() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for i, (name, dtype) in enumerate(_TYPES.items()):
        if dtype.is_complex:
            tensors[f"t.{name}"] = torch.randn(3, 2, dtype=dtype, generator=gen)
        else:
            tensors[f"t.{name}"] = torch.randint(0, 100, (3, i % 4 + 1), generator=gen).to(dtype)
    tensors["scalar"] = torch.tensor(3.5)
    tensors["empty"] = torch.zeros(0, 4)
    tensors["naïve.名"] = torch.ones(2)
    tensors["a.b"] = torch.arange(5)
    tensors["strided"] = torch.arange(12.0).reshape(3, 4).t()
    return tensors


@pytest.mark.parametrize("metadata", [{"format": "pt"}, None])
def test_the_file_is_byte_for_byte_what_safetensors_writes(tmp_path, metadata):
    tensors = _every_dtype()
    expected = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)

    digest = save_tensors(tmp_path / "t.safetensors", tensors, metadata)

    written = (tmp_path / "t.safetensors").read_bytes()
    assert written == expected
    assert digest == hashlib.sha256(expected).hexdigest()
    loaded = load_file(tmp_path / "t.safetensors")
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_tied_weights_are_stored_under_each_name(tmp_path):
    weight = torch.randn(4, 3)
    save_tensors(tmp_path / "t.safetensors", {"a": weight, "b": weight, "c": weight[1]}, None)

    loaded = load_file(tmp_path / "t.safetensors")
    assert torch.equal(loaded["a"], weight) and torch.equal(loaded["b"], weight)
    assert torch.equal(loaded["c"], weight[1])


def test_a_dtype_safetensors_cannot_store_is_named_and_nothing_is_written(tmp_path):
    wide = {"z": torch.zeros(2, dtype=torch.complex128)}
    with pytest.raises(TypeError, match=r"'z' has dtype torch\.complex128"):
        save_tensors(tmp_path / "t.safetensors", wide, None)

    assert not (tmp_path / "t.safetensors").exists()
