"""Checkpoint and file names: only ``best``, ``last``, ``epoch-<k>`` and listed files resolve."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from thaw.checkpoints import (
    CheckpointError,
    CheckpointNotFound,
    InvalidCheckpointName,
    find_checkpoint,
    find_checkpoint_file,
    save_checkpoint,
)
from thaw.checkpoints.layout import checkpoint_name, epoch_of, is_temp_name, validate_name
from thaw.errors import ThawError
from thaw.hashing import sha256_file

BAD_NAMES = [
    "",
    ".",
    "..",
    "../epoch-1",
    "epoch-1/..",
    "epoch-1/../epoch-1",
    "epoch-1/",
    "/epoch-1",
    "/etc/passwd",
    "./epoch-1",
    "epoch-1\\..",
    "..\\epoch-1",
    "epoch-1%2F..",
    "~",
    "index.json",
    "checkpoints",
    ".epoch-1.tmp-abc123",
    "epoch-01",
    "epoch-00",
    "epoch--1",
    "epoch-1.0",
    "epoch-1e3",
    "epoch-+1",
    "epoch- 1",
    "epoch-1 ",
    " best",
    "best\n",
    "epoch-1\n",
    "epoch-1\x00",
    "best\x00",
    "epoch-",
    "epoch",
    "EPOCH-1",
    "Best",
    "LAST",
    "epoch-\u0661",  # ARABIC-INDIC DIGIT ONE
    "epoch-\uff11",  # FULLWIDTH DIGIT ONE
    "epoch-\U0001d7cf",  # MATHEMATICAL BOLD DIGIT ONE
    "epoch\u20101",  # HYPHEN
    "epoch\u22121",  # MINUS SIGN
    "\uff42\uff45\uff53\uff54",  # fullwidth "best"
    "b\u0435st",  # Cyrillic e
    "best\u200b",  # zero width space
    "epoch-1\u0338",  # combining overlay
    "epoch-9999999999",
]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    save_checkpoint(
        tmp_path,
        epoch=1,
        step=3,
        model_state={"w": torch.arange(4.0)},
        config={"name": "x"},
        training_state={"epoch": 1},
        metrics={"val_loss": 0.5},
        keep_last=2,
    )
    decoy = tmp_path / "checkpoints" / ".epoch-1.tmp-abc123"
    decoy.mkdir()
    (decoy / "model.safetensors").write_bytes(b"decoy")
    (tmp_path / "secret.txt").write_text("secret")
    return tmp_path


@pytest.mark.parametrize("name", BAD_NAMES)
def test_path_tricks_in_the_name_are_refused(run: Path, name: str) -> None:
    with pytest.raises(InvalidCheckpointName) as info:
        find_checkpoint(run, name)
    assert info.value.code == "invalid_checkpoint_name"
    assert isinstance(info.value, ThawError)
    with pytest.raises(InvalidCheckpointName):
        find_checkpoint_file(run, name, "model.safetensors")


@pytest.mark.parametrize("name", [None, 1, b"best", ["best"]])
def test_non_string_names_are_refused(run: Path, name: object) -> None:
    with pytest.raises(InvalidCheckpointName):
        find_checkpoint(run, name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "file",
    [
        "",
        ".",
        "..",
        "../config.json",
        "../../secret.txt",
        "../index.json",
        "/etc/passwd",
        "./model.safetensors",
        "model.safetensors/..",
        "model.safetensors/",
        "sub/model.safetensors",
        "..\\config.json",
        "model.safetensors\x00",
        "model.safetensors\n",
        ".meta.json",
        "m\u043edel.safetensors",  # Cyrillic o
    ],
)
def test_path_tricks_in_the_file_are_refused(run: Path, file: str) -> None:
    with pytest.raises(InvalidCheckpointName):
        find_checkpoint_file(run, "epoch-1", file)


@pytest.mark.parametrize(
    "file", ["meta.json", "index.json", "secret.txt", "MODEL.SAFETENSORS", "model.safetensors "]
)
def test_files_not_listed_in_meta_are_not_found(run: Path, file: str) -> None:
    with pytest.raises(CheckpointNotFound) as info:
        find_checkpoint_file(run, "best", file)
    assert info.value.code == "checkpoint_not_found"


def test_listed_file_replaced_by_a_link_is_not_served(run: Path) -> None:
    folder = run / "checkpoints" / "epoch-1"
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(run / "secret.txt")
    with pytest.raises(CheckpointNotFound):
        find_checkpoint_file(run, "epoch-1", "config.json")


@pytest.mark.parametrize("name", ["epoch-0", "epoch-2", "epoch-10", "epoch-123456789"])
def test_valid_but_absent_names_are_not_found(run: Path, name: str) -> None:
    with pytest.raises(CheckpointNotFound) as info:
        find_checkpoint(run, name)
    assert "epoch-1" in str(info.value)
    assert not isinstance(info.value, InvalidCheckpointName)


def test_good_names_resolve_inside_the_run(run: Path) -> None:
    folder = run / "checkpoints" / "epoch-1"
    for name in ("best", "last", "epoch-1"):
        assert find_checkpoint(run, name) == folder
    assert find_checkpoint_file(run, "last", "model.safetensors") == folder / "model.safetensors"


def test_name_helpers() -> None:
    assert checkpoint_name(0) == "epoch-0"
    assert checkpoint_name(12) == "epoch-12"
    assert epoch_of("epoch-12") == 12
    assert epoch_of("epoch-012") is None
    assert epoch_of("best") is None
    assert validate_name("epoch-7") == "epoch-7"
    assert is_temp_name(".epoch-3.tmp-0f9a")
    assert is_temp_name(".epoch-3.old-0f9a")
    assert not is_temp_name("epoch-3")
    for bad in (-1, True, 1.0):
        with pytest.raises(ValueError):
            checkpoint_name(bad)  # type: ignore[arg-type]


def test_errors_are_thaw_errors_with_codes() -> None:
    assert issubclass(CheckpointError, ThawError)
    assert CheckpointNotFound("x").code == "checkpoint_not_found"
    assert InvalidCheckpointName("x", "hint").code == "invalid_checkpoint_name"
    assert str(InvalidCheckpointName("bad name", "use best")) == "bad name (use best)"


def test_sha256_streams_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000 + b"z")
    expected = hashlib.sha256(b"abc" * 1000 + b"z").hexdigest()
    assert sha256_file(path, chunk_size=7) == expected
    assert sha256_file(path) == expected
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
