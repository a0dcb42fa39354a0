"""Checkpoints rebuild in one call (`thaw.load_model`) and a finished job can be the base
model of the next one (`source: job`)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from safetensors.torch import load_file
from support import bits_equal, minilm_dir

import thaw
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train

JOB_ID = "job_0123456789abcdef01234567"


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=minilm_dir().parent,
        datasets_dir=tmp_path / "datasets",
    )


def test_continue_from_a_finished_job_starts_from_its_weights(tmp_path):
    settings = _settings(tmp_path)
    first = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 24}},
            "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
            "hyperparameters": {"epochs": 1, "batch_size": 8, "image_size": 32},
        }
    )
    run = settings.jobs_dir / JOB_ID
    train(first, run, settings)
    parent = load_file(str(run / "checkpoints" / "epoch-1" / "model.safetensors"))

    second = JobSpec.model_validate(
        {
            "base_model": {"source": "job", "name": JOB_ID, "checkpoint": "last"},
            "dataset": {"synthetic": {"num_classes": 5, "num_examples": 30}},
            "freeze": {"default": "frozen", "rules": [{"match": "layer4", "trainable": True}]},
            "hyperparameters": {"epochs": 1, "batch_size": 10, "image_size": 32},
        }
    )
    child_run = tmp_path / "child"
    train(second, child_run, settings)
    child = load_file(str(child_run / "checkpoints" / "epoch-1" / "model.safetensors"))
    assert child["fc.weight"].shape == (5, 512)
    untouched = [k for k in parent if not k.startswith(("layer4.", "fc."))]
    assert [k for k in untouched if not bits_equal(parent[k], child[k])] == []
    assert not torch.equal(parent["layer4.0.conv1.weight"], child["layer4.0.conv1.weight"])


def test_load_model_rebuilds_a_text_classifier_without_its_base_folder(tmp_path):
    settings = _settings(tmp_path)
    data = settings.datasets_dir
    data.mkdir(parents=True)
    with (data / "t.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(16):
            writer.writerow(
                [f"{'good great' if i % 2 else 'bad awful'} {i}", "pos" if i % 2 else "neg"]
            )
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "huggingface", "name": minilm_dir().name},
            "dataset": {"path": "t.csv"},
            "freeze": {"default": "frozen", "rules": [{"match": "group:-2:", "trainable": True}]},
            "hyperparameters": {"epochs": 1, "batch_size": 8, "max_length": 16},
        }
    )
    run = tmp_path / "run"
    train(spec, run, settings)
    folder = run / "checkpoints" / "epoch-1"
    model = thaw.load_model(folder)
    saved = load_file(str(folder / "model.safetensors"))
    state = model.state_dict()
    assert [k for k in saved if not bits_equal(saved[k], state[k])] == []
    ids = torch.tensor([[101, 2204, 102]])
    assert model(input_ids=ids).logits.shape == (1, 2)
