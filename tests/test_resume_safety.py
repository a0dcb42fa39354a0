"""Resuming never unpickles: a resume state that holds a pickle is refused, unexecuted."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from thaw.errors import ThawError
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _spec() -> JobSpec:
    return JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 24}},
            "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
            "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32},
        }
    )


@pytest.mark.parametrize("name", ["training_state.safetensors", "model.safetensors"])
def test_resume_refuses_a_pickled_state_and_never_runs_it(tmp_path, name):
    run = tmp_path / "run"
    settings = Settings(data_dir=tmp_path / "data")
    spec = _spec()
    train(spec, run, settings)
    marker = tmp_path / "pwned"
    target = run / "checkpoints" / "epoch-2" / name
    target.write_bytes(pickle.dumps(_Payload(marker)))

    with pytest.raises(ThawError) as err:
        train(spec, run, settings)
    assert not marker.exists()
    assert err.value.code in {"checkpoint_corrupt", "unsafe_pickle"}
