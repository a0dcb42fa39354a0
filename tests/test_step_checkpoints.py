"""Step checkpoints: a run stopped inside an epoch resumes from that step bitwise equal to
an unbroken run; periodic ones stay out of the listed checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from support import RESNET_FREEZE, bits_equal

from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import NullReporter, train


def _spec(**checkpointing) -> JobSpec:
    return JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 40}},
            "freeze": RESNET_FREEZE,
            "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32, "num_workers": 2},
            "checkpointing": {"every_epochs": 1, "keep_last": 5, **checkpointing},
        }
    )


class PreemptAt(NullReporter):
    def __init__(self, step: int):
        self.step = step
        self.seen = 0
        self.logs: list[str] = []

    def progress(self, progress):
        self.seen = progress["step"]

    def log(self, level, message):
        self.logs.append(message)

    def stop_reason(self):
        return "preempt" if self.seen >= self.step else None


def _final(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / "epoch-2" / "model.safetensors"))


@pytest.mark.parametrize("stop_at", [2, 6])  # inside epoch 1, inside epoch 2
def test_a_preempted_run_resumes_from_its_step_bitwise_equal(tmp_path: Path, stop_at: int):
    settings = Settings(data_dir=tmp_path / "data", progress_interval_seconds=0)
    spec = _spec()
    train(spec, tmp_path / "unbroken", settings)

    run = tmp_path / "run"
    preempt = PreemptAt(stop_at)
    stopped = train(spec, run, settings, preempt)
    assert (stopped.status, stopped.step) == ("preempted", stop_at)
    meta = json.loads((run / "resume" / "meta.json").read_text())
    assert meta["step"] == stop_at
    again = PreemptAt(10**9)
    done = train(spec, run, settings, again)
    assert done.status == "succeeded"
    assert any(m.startswith(f"resumed from step {stop_at} ") for m in again.logs), again.logs
    expected, final = _final(tmp_path / "unbroken"), _final(run)
    assert [k for k in expected if not bits_equal(expected[k], final[k])] == []


def test_every_steps_writes_resume_points_that_are_not_listed(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    run = tmp_path / "run"
    train(_spec(every_steps=3), run, settings)
    # 32 training examples, 4 steps per epoch: steps 3 and 6 (not 4 or 8, epoch ends)
    meta = json.loads((run / "resume" / "meta.json").read_text())
    assert (meta["epoch"], meta["batch"], meta["step"]) == (2, 2, 6)
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    assert [c["name"] for c in index["checkpoints"]] == ["epoch-1", "epoch-2"]
    assert index["last"] == "epoch-2"
