"""Checkpoint writes off the training thread: the trainer snapshots its state and trains
on while the write and the fenced commit wait in the background, one at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from thaw.checkpoints import find_checkpoint, list_checkpoints, load_model_state
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train
from thaw.training.background_commit import BackgroundCommit
from thaw.training.reporter import NullReporter


def test_one_commit_in_flight_and_what_follows_it_runs_on_the_callers_thread() -> None:
    commits = BackgroundCommit()
    release = threading.Event()
    seen: list[Any] = []

    def first() -> str:
        release.wait(timeout=60)
        seen.append("first written")
        return "one"

    def second() -> str:
        seen.append("second started")
        return "two"

    def then(result: str) -> None:
        seen.append((result, threading.current_thread() is threading.main_thread()))

    commits.submit(first, then)
    assert commits.busy
    commits.poll()  # still writing: nothing follows yet, and nothing waits
    assert seen == []
    waiter = threading.Thread(target=release.set)
    waiter.start()
    commits.submit(second, then)  # waits for the first, runs its then() here, then starts
    commits.wait()
    waiter.join()
    assert seen == ["first written", ("one", True), "second started", ("two", True)]

    def broken() -> None:
        raise OSError("disk gone")

    commits.submit(broken, then)
    with pytest.raises(OSError, match="disk gone"):
        commits.wait()
    assert not commits.busy


class _HeldCommit(NullReporter):
    """A store that answers the epoch-1 commit's lease check only once training has gone
    three steps past that epoch's end, as Redis does after an outage."""

    def __init__(self, steps_per_epoch: int):
        self.past_epoch_end = threading.Event()
        self.steps_per_epoch = steps_per_epoch
        self.order: list[str] = []
        self.fences = 0

    def progress(self, progress: dict[str, Any]) -> None:
        if progress["step"] >= self.steps_per_epoch + 3:
            self.past_epoch_end.set()
        self.order.append(f"step {progress['step']}")

    def checkpoint(self, info: dict[str, Any]) -> None:
        self.order.append(f"checkpoint {info['name']}")

    def fence(self) -> int:
        self.fences += 1
        if self.fences == 3:  # raise_fence, the save's first check, then the publish's
            assert threading.current_thread() is not threading.main_thread()
            assert self.past_epoch_end.wait(timeout=120)
        return 1


def test_training_goes_on_past_an_epoch_end_while_its_commit_waits(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 40}},
            "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
            "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32},
        }
    )
    settings = Settings(data_dir=tmp_path / "data", progress_interval_seconds=0)
    reporter = _HeldCommit(steps_per_epoch=4)  # 32 training samples, batch 8
    result = train(spec, tmp_path / "run", settings, reporter)
    assert result.status == "succeeded"
    assert [c.name for c in list_checkpoints(tmp_path / "run")] == ["epoch-1", "epoch-2"]
    done = reporter.order.index("checkpoint epoch-1")
    assert "step 7" in reporter.order[:done]  # trained on while the commit waited
    assert reporter.order[-2:] == ["checkpoint epoch-2", "step 8"]  # published before the end


class _HeldBeforeThaw(NullReporter):
    """Holds the epoch-2 save before it writes anything, until training has gone two steps
    into epoch 3 (where layer4 thaws) or, when the trainer waits for the save first, for
    three seconds."""

    def __init__(self, steps_per_epoch: int):
        self.into_epoch_3 = threading.Event()
        self.steps_per_epoch = steps_per_epoch
        self.order: list[str] = []
        self.fences = 0

    def progress(self, progress: dict[str, Any]) -> None:
        if progress["step"] >= 2 * self.steps_per_epoch + 2:
            self.into_epoch_3.set()
        self.order.append(f"step {progress['step']}")

    def checkpoint(self, info: dict[str, Any]) -> None:
        self.order.append(f"checkpoint {info['name']}")

    def fence(self) -> int:
        self.fences += 1
        if self.fences == 4:  # raise_fence, epoch 1's save and publish, then epoch 2's save
            self.into_epoch_3.wait(timeout=3)
        return 1


def test_a_thaw_waits_for_the_save_that_shares_the_frozen_weights(tmp_path: Path) -> None:
    # A save shares frozen parameters with the model instead of copying them; a phase that
    # thaws them must not start training them while that save is still being written.
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 40}},
            "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
            "schedule": [{"at_epoch": 3, "unfreeze": ["layer4"]}],
            "hyperparameters": {"epochs": 3, "batch_size": 8, "image_size": 32, "lr": 1e-2},
            "checkpointing": {"keep_last": 3},
        }
    )
    settings = Settings(data_dir=tmp_path / "data", progress_interval_seconds=0)
    reporter = _HeldBeforeThaw(steps_per_epoch=4)
    assert train(spec, tmp_path / "run", settings, reporter).status == "succeeded"
    assert reporter.order.index("checkpoint epoch-2") < reporter.order.index("step 9")
    states = [load_model_state(find_checkpoint(tmp_path / "run", f"epoch-{e}")) for e in (1, 2, 3)]
    layer4 = [k for k in states[0] if k.startswith("layer4.") and k.endswith("weight")]
    assert layer4
    for key in layer4:
        assert torch.equal(states[0][key].view(torch.int32), states[1][key].view(torch.int32))
    assert any(not torch.equal(states[1][k], states[2][k]) for k in layer4)
