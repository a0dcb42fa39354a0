"""`thaw train` runs the service's trainer in-process, with a progress bar, and
`thaw.load_model` rebuilds what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import thaw

SPEC = {
    "base_model": {"source": "torchvision", "name": "resnet18"},
    "dataset": {"synthetic": {"num_classes": 3, "num_examples": 48}},
    "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
    "schedule": [{"at_epoch": 2, "unfreeze": ["layer4"]}],
    "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32},
}


def _train(spec: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return subprocess.run(
        [sys.executable, "-m", "thaw.cli", "train", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_thaw_train_writes_checkpoints_shows_progress_and_loads_back(tmp_path: Path):
    done = _train(SPEC, tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["epoch"] == 2
    assert set(result["metrics"]) == {
        "val_loss",
        "val_accuracy",
        "val_f1_macro",
        "train_loss",
        "epoch",
    }
    assert "epoch 2/2" in done.stderr
    assert "step/s" in done.stderr or "s/step" in done.stderr
    assert "phase 1 at step 5: 15 thawed, 0 frozen" in done.stderr
    folder = tmp_path / "run" / "checkpoints" / "epoch-2"
    config = json.loads((folder / "config.json").read_text())
    assert config["num_classes"] == 3 and config["image_size"] == 32
    assert config["mean"] == [0.485, 0.456, 0.406]
    model = thaw.load_model(folder)
    assert model.training is False
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    for alias in ("best", "last"):
        by_alias = thaw.load_model(tmp_path / "run" / "checkpoints" / alias)
        index = json.loads((tmp_path / "run" / "checkpoints" / "index.json").read_text())
        target = tmp_path / "run" / "checkpoints" / index[alias]
        assert (tmp_path / "run" / "checkpoints" / alias).resolve() == target.resolve()
        by_epoch = thaw.load_model(target)
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(by_alias(x), by_epoch(x))


def test_thaw_train_bad_spec_exits_2_with_one_line(tmp_path: Path):
    bad = {**SPEC, "freeze": {"rules": [{"match": "layr4", "trainable": True}]}}
    done = _train(bad, tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("thaw: error: freeze.rules[0].match")
    assert "layer4" in lines[0]
    assert not (tmp_path / "run").exists()


def test_thaw_train_loads_no_redis_or_object_store_client() -> None:
    # `thaw train` runs without Redis or a bucket; their clients cost it start-up time.
    probe = (
        "import sys\n"
        "from thaw.cli import _train\n"
        "from thaw.settings import get_settings\n"
        "from thaw.training import train\n"
        "from thaw.training.console import ConsoleReporter\n"
        "print(sorted(m for m in ('redis', 'boto3', 'botocore') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip() == "[]"
