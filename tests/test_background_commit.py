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


class _HeldFence(NullReporter):
    """A store whose ``held``-th fencing check (counted from the run's raise_fence) answers
    only once training has reached step ``until``, or after ``timeout`` seconds when
    ``must_reach`` is false (a trainer that rightly waits for the check never gets there)."""

    def __init__(self, held: int, until: int, timeout: float = 120, must_reach: bool = True):
        self.reached = threading.Event()
        self.held, self.until, self.timeout, self.must_reach = held, until, timeout, must_reach
        self.order: list[str] = []
        self.fences = 0

    def progress(self, progress: dict[str, Any]) -> None:
        if progress["step"] >= self.until:
            self.reached.set()
        self.order.append(f"step {progress['step']}")

    def checkpoint(self, info: dict[str, Any]) -> None:
        self.order.append(f"checkpoint {info['name']}")

    def fence(self) -> int:
        self.fences += 1
        if self.fences == self.held:
            assert threading.current_thread() is not threading.main_thread()
            reached = self.reached.wait(timeout=self.timeout)
            assert reached or not self.must_reach
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
    # 32 training samples of batch 8: 4 steps an epoch. The held check is the epoch-1
    # publish's (after raise_fence and the save's first check), as Redis after an outage.
    reporter = _HeldFence(held=3, until=4 + 3)
    result = train(spec, tmp_path / "run", settings, reporter)
    assert result.status == "succeeded"
    assert [c.name for c in list_checkpoints(tmp_path / "run")] == ["epoch-1", "epoch-2"]
    done = reporter.order.index("checkpoint epoch-1")
    assert "step 7" in reporter.order[:done]  # trained on while the commit waited
    assert reporter.order[-2:] == ["checkpoint epoch-2", "step 8"]  # published before the end


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
    # 4 steps an epoch. The held check is epoch 2's save, before it writes anything (after
    # raise_fence and epoch 1's save and publish), until two steps into epoch 3, where
    # layer4 thaws; a trainer that waits for the save first never gets there.
    reporter = _HeldFence(held=4, until=2 * 4 + 2, timeout=3, must_reach=False)
    assert train(spec, tmp_path / "run", settings, reporter).status == "succeeded"
    assert reporter.order.index("checkpoint epoch-2") < reporter.order.index("step 9")
    states = [load_model_state(find_checkpoint(tmp_path / "run", f"epoch-{e}")) for e in (1, 2, 3)]
    layer4 = [k for k in states[0] if k.startswith("layer4.") and k.endswith("weight")]
    assert layer4
    for key in layer4:
        assert torch.equal(states[0][key].view(torch.int32), states[1][key].view(torch.int32))
    assert any(not torch.equal(states[1][k], states[2][k]) for k in layer4)
