"""Checkpoint folders, index, best/last aliases, pruning, crash safety and resume."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import thaw.checkpoints.commit as commit
import thaw.checkpoints.store as store
from thaw.checkpoints import (
    CheckpointNotFound,
    CorruptCheckpoint,
    capture_rng_state,
    find_checkpoint,
    find_checkpoint_file,
    list_checkpoints,
    load_checkpoint_training_state,
    load_model_state,
    read_config,
    read_meta,
    restore_rng_state,
    save_checkpoint,
    verify_checkpoint,
)

CONFIG = {
    "source": "torchvision",
    "name": "tiny",
    "num_classes": 3,
    "classes": ["cat", "dog", "emu"],
    "image_size": 8,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "spec_hash": "ab12",
}
FILES = {"model.safetensors", "config.json", "training_state.safetensors", "meta.json"}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make_model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def run_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 4) -> None:
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 4)
        y = torch.randint(0, 3, (8,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def save(run: Path, epoch: int, metrics: dict[str, Any], keep_last: int | None = None, **kw: Any):
    model = make_model(epoch)
    return save_checkpoint(
        run,
        epoch=epoch,
        step=epoch * 10,
        model_state=model.state_dict(),
        config=CONFIG,
        training_state={"epoch": epoch},
        metrics=metrics,
        keep_last=keep_last,
        **kw,
    )


def names(run: Path) -> list[str]:
    return [c.name for c in list_checkpoints(run)]


def on_disk(run: Path) -> list[str]:
    return sorted(os.listdir(run / "checkpoints"))


def alias(run: Path, name: str) -> str:
    """The alias's target by the index, checked against the link on disk."""
    target = find_checkpoint(run, name).name
    link = run / "checkpoints" / name
    assert link.is_symlink() and os.readlink(link) == target
    assert (link / "meta.json").read_bytes() == (
        run / "checkpoints" / target / "meta.json"
    ).read_bytes()
    return target


def test_layout_meta_and_index(tmp_path: Path) -> None:
    info = save(tmp_path, 1, {"val_loss": 0.5, "val_acc": 0.75}, keep_last=2)
    folder = tmp_path / "checkpoints" / "epoch-1"
    assert info.path == folder
    assert on_disk(tmp_path) == ["best", "epoch-1", "index.json", "last"]
    assert set(os.listdir(folder)) == FILES

    meta = json.loads((folder / "meta.json").read_text())
    assert meta["epoch"] == 1 and meta["step"] == 10
    assert meta["metrics"] == {"val_loss": 0.5, "val_acc": 0.75}
    assert meta["created_at"].endswith("Z")
    assert [f["name"] for f in meta["files"]] == [
        "model.safetensors",
        "config.json",
        "training_state.safetensors",
    ]
    for f in meta["files"]:
        data = (folder / f["name"]).read_bytes()
        assert f["size"] == len(data)
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert [f.to_dict() for f in info.files] == meta["files"]

    index = json.loads((tmp_path / "checkpoints" / "index.json").read_text())
    assert index["best"] == "epoch-1" and index["last"] == "epoch-1"
    assert [c["name"] for c in index["checkpoints"]] == ["epoch-1"]
    assert info.to_dict() == {
        "name": "epoch-1",
        "epoch": 1,
        "step": 10,
        "metrics": {"val_loss": 0.5, "val_acc": 0.75},
        "files": meta["files"],
        "created_at": meta["created_at"],
        "best": True,
        "last": True,
    }


def test_config_is_written_verbatim(tmp_path: Path) -> None:
    save(tmp_path, 1, {})
    folder = find_checkpoint(tmp_path, "last")
    text = (folder / "config.json").read_text()
    assert json.loads(text) == CONFIG
    assert list(json.loads(text)) == list(CONFIG)
    assert read_config(folder) == CONFIG


def test_model_weights_round_trip_bitwise(tmp_path: Path) -> None:
    model = make_model(3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    run_epoch(model, optimizer)
    state = model.state_dict()
    save_checkpoint(
        tmp_path,
        epoch=1,
        step=4,
        model_state=state,
        config=CONFIG,
        training_state={},
        metrics={},
        keep_last=1,
    )
    loaded = load_model_state(find_checkpoint(tmp_path, "epoch-1"))
    assert sorted(loaded) == sorted(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name
    assert loaded["body.1.num_batches_tracked"].item() == 4
    fresh = make_model(99)
    fresh.load_state_dict(loaded, strict=True)
    for a, b in zip(fresh.state_dict().values(), state.values(), strict=True):
        assert torch.equal(a, b)


def test_tied_and_non_contiguous_tensors_are_stored(tmp_path: Path) -> None:
    emb = nn.Embedding(5, 4)
    out = nn.Linear(4, 5, bias=False)
    out.weight = emb.weight
    tied = {"emb.weight": emb.weight, "out.weight": out.weight}
    big = torch.arange(20.0).view(4, 5)
    state = {**tied, "transposed": big.t(), "slice": big[1], "half": torch.ones(2).half()}
    save_checkpoint(
        tmp_path,
        epoch=0,
        step=0,
        model_state=state,
        config={},
        training_state={},
        metrics={},
        keep_last=1,
    )
    loaded = load_model_state(find_checkpoint(tmp_path, "epoch-0"))
    assert torch.equal(loaded["emb.weight"], emb.weight.detach())
    assert torch.equal(loaded["out.weight"], emb.weight.detach())
    assert loaded["transposed"].tolist() == big.t().tolist()
    assert loaded["slice"].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert loaded["half"].dtype == torch.float16


def test_best_tracks_min_val_loss_and_last_is_newest(tmp_path: Path) -> None:
    losses = [0.9, 0.5, 0.7, 0.4, 0.6]
    expected_best = ["epoch-1", "epoch-2", "epoch-2", "epoch-4", "epoch-4"]
    for epoch, (loss, best) in enumerate(zip(losses, expected_best, strict=True), start=1):
        info = save(tmp_path, epoch, {"val_loss": loss})
        assert info.last is True
        assert info.best is (best == f"epoch-{epoch}")
        assert alias(tmp_path, "best") == best
        assert alias(tmp_path, "last") == f"epoch-{epoch}"
    listed = list_checkpoints(tmp_path)
    assert [c.name for c in listed] == [f"epoch-{k}" for k in range(1, 6)]
    assert [c.best for c in listed] == [False, False, False, True, False]
    assert [c.last for c in listed] == [False, False, False, False, True]
    assert [c.metrics["val_loss"] for c in listed] == losses


def test_best_with_max_mode_and_ties_keep_the_earliest(tmp_path: Path) -> None:
    for epoch, acc in enumerate([0.6, 0.8, 0.8, 0.7], start=1):
        save(tmp_path, epoch, {"val_acc": acc}, monitor="val_acc", mode="max")
    assert alias(tmp_path, "best") == "epoch-2"


def test_without_the_monitored_metric_best_is_last(tmp_path: Path) -> None:
    save(tmp_path, 1, {"train_loss": 1.0})
    save(tmp_path, 2, {"train_loss": 0.5, "val_loss": float("nan")})
    assert alias(tmp_path, "best") == "epoch-2"
    assert read_meta(find_checkpoint(tmp_path, "epoch-2")).metrics["val_loss"] is None
    save(tmp_path, 3, {"val_loss": 2.0})
    save(tmp_path, 4, {"train_loss": 0.1})
    assert alias(tmp_path, "best") == "epoch-3"


def test_keep_last_prunes_but_never_the_best(tmp_path: Path) -> None:
    for epoch, loss in enumerate([0.5, 0.9, 0.8, 0.7, 0.6], start=1):
        save(tmp_path, epoch, {"val_loss": loss}, keep_last=2)
    assert names(tmp_path) == ["epoch-1", "epoch-4", "epoch-5"]
    assert on_disk(tmp_path) == ["best", "epoch-1", "epoch-4", "epoch-5", "index.json", "last"]
    assert alias(tmp_path, "best") == "epoch-1"
    assert alias(tmp_path, "last") == "epoch-5"
    with pytest.raises(CheckpointNotFound):
        find_checkpoint(tmp_path, "epoch-3")


def test_old_best_is_pruned_once_superseded(tmp_path: Path) -> None:
    save(tmp_path, 1, {"val_loss": 0.5}, keep_last=1)
    save(tmp_path, 2, {"val_loss": 0.9}, keep_last=1)
    assert names(tmp_path) == ["epoch-1", "epoch-2"]
    save(tmp_path, 3, {"val_loss": 0.4}, keep_last=1)
    assert names(tmp_path) == ["epoch-3"]
    save(tmp_path, 4, {"val_loss": 0.8}, keep_last=1)
    assert names(tmp_path) == ["epoch-3", "epoch-4"]
    assert on_disk(tmp_path) == ["best", "epoch-3", "epoch-4", "index.json", "last"]


def test_saving_an_existing_epoch_replaces_it(tmp_path: Path) -> None:
    save(tmp_path, 1, {"val_loss": 0.5})
    save(tmp_path, 2, {"val_loss": 0.4})
    save(tmp_path, 3, {"val_loss": 0.6})
    save(tmp_path, 2, {"val_loss": 0.7})
    assert names(tmp_path) == ["epoch-1", "epoch-3", "epoch-2"]
    assert alias(tmp_path, "last") == "epoch-2"
    assert alias(tmp_path, "best") == "epoch-1"
    assert read_meta(find_checkpoint(tmp_path, "epoch-2")).metrics == {"val_loss": 0.7}
    assert on_disk(tmp_path) == ["best", "epoch-1", "epoch-2", "epoch-3", "index.json", "last"]


def test_leftovers_of_a_crash_are_ignored_then_cleaned(tmp_path: Path) -> None:
    save(tmp_path, 1, {"val_loss": 0.5})
    root = tmp_path / "checkpoints"
    half = root / ".epoch-2.tmp-0a1b2c"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)
    unlisted = root / "epoch-2"
    unlisted.mkdir()
    (unlisted / "meta.json").write_text("{}")
    (root / ".index.json.tmp-abcdef").write_text("{")
    os.symlink("epoch-2", root / ".last.tmp-0a1b2c")

    assert names(tmp_path) == ["epoch-1"]
    assert alias(tmp_path, "last") == "epoch-1"
    with pytest.raises(CheckpointNotFound):
        find_checkpoint(tmp_path, "epoch-2")

    save(tmp_path, 2, {"val_loss": 0.4})
    assert on_disk(tmp_path) == ["best", "epoch-1", "epoch-2", "index.json", "last"]
    assert names(tmp_path) == ["epoch-1", "epoch-2"]
    assert set(os.listdir(root / "epoch-2")) == FILES
    verify_checkpoint(root / "epoch-2")


def test_failure_while_writing_leaves_index_and_folders_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(tmp_path, 1, {"val_loss": 0.5})
    index_before = (tmp_path / "checkpoints" / "index.json").read_bytes()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "save_training_state", crash)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, 2, {"val_loss": 0.1})
    assert (tmp_path / "checkpoints" / "index.json").read_bytes() == index_before
    assert on_disk(tmp_path) == ["best", "epoch-1", "index.json", "last"]
    assert alias(tmp_path, "best") == "epoch-1"


def test_crash_before_index_update_leaves_new_folder_unlisted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(tmp_path, 1, {"val_loss": 0.5})

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(commit, "write_index", crash)
        with pytest.raises(KeyboardInterrupt):
            save(tmp_path, 2, {"val_loss": 0.1})
    assert on_disk(tmp_path) == ["best", "epoch-1", "epoch-2", "index.json", "last"]
    assert names(tmp_path) == ["epoch-1"]
    assert alias(tmp_path, "best") == "epoch-1"
    assert alias(tmp_path, "last") == "epoch-1"

    save(tmp_path, 3, {"val_loss": 0.9})
    assert on_disk(tmp_path) == ["best", "epoch-1", "epoch-3", "index.json", "last"]
    assert names(tmp_path) == ["epoch-1", "epoch-3"]


def test_verify_detects_a_changed_file(tmp_path: Path) -> None:
    save(tmp_path, 1, {})
    folder = find_checkpoint(tmp_path, "epoch-1")
    assert [f.name for f in verify_checkpoint(folder)] == [
        "model.safetensors",
        "config.json",
        "training_state.safetensors",
    ]
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0x01
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match=r"epoch-1/model\.safetensors does not match"):
        verify_checkpoint(folder)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        save(tmp_path, 1, {}, mode="avg")
    with pytest.raises(ValueError, match="keep_last"):
        save(tmp_path, 1, {}, keep_last=0)
    with pytest.raises(ValueError, match="epoch"):
        save(tmp_path, -1, {})
    assert list_checkpoints(tmp_path) == []
    with pytest.raises(CheckpointNotFound, match="nothing was saved"):
        find_checkpoint(tmp_path, "best")


def test_resume_from_checkpoint_matches_an_unbroken_run(tmp_path: Path) -> None:
    def setup() -> tuple[Tiny, torch.optim.Optimizer, Any]:
        model = make_model(7)
        optimizer = torch.optim.AdamW(
            [
                {"params": model.body.parameters(), "lr": 1e-3, "name": "body"},
                {"params": model.head.parameters(), "lr": 1e-2, "name": "head"},
            ],
            weight_decay=0.05,
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
        return model, optimizer, scheduler

    torch.manual_seed(11)
    model, optimizer, scheduler = setup()
    torch.manual_seed(11)
    for epoch in (1, 2, 3):
        run_epoch(model, optimizer)
        scheduler.step()
        if epoch == 1:
            save_checkpoint(
                tmp_path,
                epoch=1,
                step=4,
                model_state=model.state_dict(),
                config=CONFIG,
                training_state={
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": capture_rng_state(),
                    "epoch": 1,
                    "step": 4,
                    "phase": 0,
                    "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
                    "param_group_names": ["body", "head"],
                },
                metrics={"val_loss": 1.0},
                keep_last=1,
            )
    unbroken = model.state_dict()

    torch.manual_seed(999)
    resumed, optimizer2, scheduler2 = setup()
    folder = find_checkpoint(tmp_path, "last")
    resumed.load_state_dict(load_model_state(folder))
    state = load_checkpoint_training_state(folder)
    optimizer2.load_state_dict(state["optimizer"])
    scheduler2.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    assert (state["epoch"], state["step"], state["phase"]) == (1, 4, 0)
    assert state["param_group_names"] == [g["name"] for g in optimizer2.param_groups]
    for _ in (2, 3):
        run_epoch(resumed, optimizer2)
        scheduler2.step()

    for name, tensor in unbroken.items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


def test_checkpoint_file_resolves_listed_files_only(tmp_path: Path) -> None:
    save(tmp_path, 1, {})
    folder = tmp_path / "checkpoints" / "epoch-1"
    for file in ("model.safetensors", "config.json", "training_state.safetensors"):
        assert find_checkpoint_file(tmp_path, "best", file) == folder / file
        assert find_checkpoint_file(tmp_path, "epoch-1", file) == folder / file
    (folder / "secret.txt").write_text("x")
    with pytest.raises(CheckpointNotFound, match="no file"):
        find_checkpoint_file(tmp_path, "last", "secret.txt")
    with pytest.raises(CheckpointNotFound, match="no file"):
        find_checkpoint_file(tmp_path, "last", "meta.json")
