"""Pickle-free resume state: exact round trips, and refusal of unsafe legacy pickles."""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from thaw.checkpoints import (
    CheckpointNotFound,
    CorruptCheckpoint,
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def make_optimizer(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    body = [p for n, p in model.named_parameters() if not n.startswith("3.")]
    head = list(model[3].parameters())
    groups = [
        {"params": body, "lr": 1e-3, "name": "body"},
        {"params": head, "lr": 5e-3, "name": "head", "weight_decay": 0.0},
    ]
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.01, betas=(0.9, 0.98))
    return torch.optim.SGD(groups, lr=1e-3, momentum=0.9, nesterov=True)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    model.train()
    for _ in range(steps):
        x = torch.randn(16, 4)
        y = torch.randint(0, 3, (16,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Same types all the way down, tensors bitwise equal (dtype and shape included)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}/{i}")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


def full_state(kind: str) -> tuple[nn.Module, torch.optim.Optimizer, dict[str, Any]]:
    model = make_model()
    optimizer = make_optimizer(kind, model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    train_steps(model, optimizer, 3)
    scheduler.step()
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "epoch": 2,
        "step": 37,
        "phase": 1,
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "param_group_names": ["body", "head"],
    }
    return model, optimizer, state


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_whole_training_state_round_trips_exactly(tmp_path: Path, kind: str) -> None:
    _, _, state = full_state(kind)
    path = tmp_path / "training_state.safetensors"
    save_training_state(path, state)
    loaded = load_training_state(path)
    assert_identical(state, loaded)
    assert list(loaded["optimizer"]["state"]) == [0, 1, 2, 3, 4, 5]
    assert loaded["optimizer"]["param_groups"][0]["betas" if kind == "adamw" else "momentum"] == (
        (0.9, 0.98) if kind == "adamw" else 0.9
    )


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_optimizer_state_loads_into_fresh_optimizer(tmp_path: Path, kind: str) -> None:
    model, optimizer, state = full_state(kind)
    path = tmp_path / "training_state.safetensors"
    save_training_state(path, state)

    fresh_model = make_model()
    fresh_model.load_state_dict(model.state_dict())
    fresh = make_optimizer(kind, fresh_model)
    fresh.load_state_dict(load_training_state(path)["optimizer"])

    original = optimizer.state_dict()
    restored = fresh.state_dict()
    assert list(restored["state"]) == list(original["state"])
    for pid, slots in original["state"].items():
        assert list(restored["state"][pid]) == list(slots)
        for slot, value in slots.items():
            assert torch.equal(restored["state"][pid][slot], value), (pid, slot)
            assert restored["state"][pid][slot].dtype == value.dtype
    for group, fresh_group in zip(original["param_groups"], restored["param_groups"], strict=True):
        assert fresh_group == group
        for key, value in group.items():
            assert type(fresh_group[key]) is type(value), key

    torch.manual_seed(5)
    train_steps(model, optimizer, 2)
    torch.manual_seed(5)
    train_steps(fresh_model, fresh, 2)
    fresh_state = fresh_model.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh_state[name], tensor), name


def test_rng_state_restores_the_same_random_numbers(tmp_path: Path) -> None:
    torch.manual_seed(123)
    random.seed(456)
    np.random.seed(789)
    torch.rand(7)
    random.random()
    path = tmp_path / "rng.safetensors"
    save_training_state(path, {"rng": capture_rng_state()})
    expected = (torch.rand(5), [random.random() for _ in range(5)], np.random.rand(5))

    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    loaded = load_training_state(path)["rng"]
    assert type(loaded["python"]) is tuple and type(loaded["python"][1]) is tuple
    assert loaded["torch"].dtype == torch.uint8
    restore_rng_state(loaded)
    assert torch.equal(torch.rand(5), expected[0])
    assert [random.random() for _ in range(5)] == expected[1]
    assert np.random.rand(5).tobytes() == expected[2].tobytes()


def test_scalars_and_containers_keep_their_types(tmp_path: Path) -> None:
    state = {
        "ints": [0, -3, 2**70],
        "floats": [0.1, 1.0, -2.5e-310, float("inf"), float("-inf")],
        "nan": float("nan"),
        "bools": [True, False],
        "none": None,
        "text": "ünïcode/../x",
        "tuple": (1, (2.0, "x"), []),
        "int_keys": {3: "a", -1: "b"},
        "tuple_keys": {(1, 2): 1},
        "dollar_keys": {"$tensor": 1, "$tuple": [1]},
        "bytes": b"\x00\xff",
        "numpy_scalars": [np.int64(5), np.float32(0.25), np.bool_(True)],
        "empty": torch.zeros(0, 3),
        "scalar_tensor": torch.tensor(3.0),
        "bf16": torch.tensor([1.5, -2.25], dtype=torch.bfloat16),
        "long": torch.tensor([2**40], dtype=torch.int64),
    }
    path = tmp_path / "s.safetensors"
    save_training_state(path, state)
    loaded = load_training_state(path)
    assert_identical(state, loaded)
    assert loaded["ints"][2] == 1180591620717411303424
    assert loaded["floats"][1] == 1.0 and type(loaded["floats"][1]) is float


def test_same_tensor_twice_and_tensor_views_are_stored(tmp_path: Path) -> None:
    base = torch.arange(12, dtype=torch.float32)
    state = {"a": base, "b": base, "view": base[2:5], "t": base.view(3, 4).t()}
    path = tmp_path / "s.safetensors"
    save_training_state(path, state)
    loaded = load_training_state(path)
    assert loaded["a"].tolist() == list(range(12))
    assert loaded["b"].tolist() == list(range(12))
    assert loaded["view"].tolist() == [2.0, 3.0, 4.0]
    assert loaded["t"].tolist() == base.view(3, 4).t().tolist()


def test_file_is_safetensors_with_path_keys_and_json_metadata(tmp_path: Path) -> None:
    _, _, state = full_state("adamw")
    path = tmp_path / "s.safetensors"
    save_training_state(path, state)
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert "optimizer/state/0/exp_avg" in header
    assert "optimizer/state/5/exp_avg_sq" in header
    assert "rng/torch" in header
    meta = header["__metadata__"]
    assert meta["thaw.format"] == "thaw.training_state"
    tree = json.loads(meta["thaw.state"])
    assert tree["epoch"] == 2 and tree["phase"] == 1
    assert tree["param_group_names"] == ["body", "head"]
    assert os.listdir(tmp_path) == ["s.safetensors"]


def test_unsupported_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="/x/obj"):
        save_training_state(tmp_path / "s.safetensors", {"x": {"obj": object()}})
    assert not (tmp_path / "s.safetensors").exists()
    assert os.listdir(tmp_path) == []


def test_missing_or_foreign_files_raise_thaw_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFound):
        load_training_state(tmp_path / "nope.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CorruptCheckpoint) as info:
        load_training_state(garbage)
    assert info.value.code == "checkpoint_corrupt"
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign))
    with pytest.raises(CorruptCheckpoint, match="not a Thaw training state"):
        load_training_state(foreign)
