"""Issue 8.7: non-finite numbers are refused at the edge, a run whose loss becomes NaN or
infinite fails with code `diverged` at that step, and every event is valid JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch
from worker_fixtures import Stack

from thaw.training.run import Diverged, check_diverged

DIVERGING = {
    "name": "diverges",
    "base_model": {"source": "torchvision", "name": "resnet18"},
    "dataset": {"synthetic": {"num_classes": 3, "num_examples": 48}},
    "freeze": {"default": "trainable"},
    "hyperparameters": {
        "epochs": 2, "batch_size": 8, "image_size": 32, "optimizer": "sgd", "lr": 10.0,
        "momentum": 0.99, "lr_scheduler": "constant", "weight_decay": 0,
    },
}  # fmt: skip


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_stops_the_run_at_that_step(value: float) -> None:
    check_diverged(torch.tensor(2.5), 1, 3)
    with pytest.raises(Diverged) as info:
        check_diverged(torch.tensor(value), 2, 7)
    assert info.value.code == "diverged"
    assert str(info.value).startswith(f"the training loss became {value} at step 7 (epoch 2);")


@pytest.mark.slow
def test_a_job_that_trains_to_nan_fails_with_diverged(stack: Stack) -> None:
    stack.start_worker("w")
    job = stack.submit(DIVERGING)
    done = stack.wait_done(job.id)
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "diverged"
    assert "loss became nan at step 10 (epoch 2)" in done.error.message
    for event in stack.events.read(job.id, limit=10_000):
        json.loads(json.dumps(event.to_dict(), allow_nan=False))
