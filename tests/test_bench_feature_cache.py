"""bench/feature_cache.py runs its rows once at tiny sizes (naive, expert, no-cache, whole
processes, background load), and the hand-written loops it times train and save a model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision
from digits import write_digits_folder
from worker_fixtures import ROOT


def _hand_loops():
    spec = importlib.util.spec_from_file_location("hand_loops", ROOT / "bench" / "hand_loops.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hand_loops = _hand_loops()


def test_feature_cache_bench_prints_every_row_beside_a_background_load(tmp_path):
    out = tmp_path / "rows.json"
    argv = ["--cases", "head-only,no-cache", "--images", "40", "--epochs", "1", "--image-size",
            "32", "--batch-size", "16", "--load", "1", "--no-off", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "feature_cache.py"), *argv],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, plain = json.loads(out.read_text())
    assert (head["case"], head["target"], plain["case"], plain["target"]) == (
        "head-only",
        4.5,
        "no-cache",
        0.97,
    )
    assert head["load"] == 1 and head["rounds"] == 1
    for row in (head, plain):
        assert row["hand_s"] > 0 and row["thaw_s"] > 0 and row["ratio"] > 0
    assert head["feature_cache_mib"] > 0 and plain["feature_cache_mib"] == 0
    expert = head["expert"]
    assert expert["target"] == 0.9  # the loaded target
    assert expert["expert_s"] > 0 and expert["thaw_s"] > 0 and expert["ratio"] > 0
    processes = head["processes"]
    for path in ("thaw", "expert", "naive"):
        assert processes[f"{path}_s"] > 0
        # the child's own peak, not this bench's (a child inherits its parent's through exec)
        assert 50 < processes[f"{path}_mib"] < 4096
    assert "expert" not in plain and "processes" not in plain
    lines = proc.stdout.splitlines()
    assert "1 background load processes" in lines[0]
    assert any(line.strip().startswith("end to end: expert") for line in lines)
    assert any(
        line.strip().startswith("processes (wall, CPU, peak RSS): thaw train") for line in lines
    )


@pytest.mark.parametrize("loop", ["naive", "expert"])
def test_hand_loops_train_layer4_and_fc_only_and_save_the_whole_model(tmp_path, loop):
    """(The head-only loops run in the bench's rows above.)"""
    trains = "layer4"
    folder = write_digits_folder(tmp_path / "digits", per_class=2, size=32)
    torch.manual_seed(0)  # as the loops seed before they build the model
    before = torchvision.models.resnet18(num_classes=10).state_dict()
    accuracy = hand_loops.LOOPS[loop](folder, trains, 1, 8, 32, tmp_path / "model.pt")
    assert 0.0 <= accuracy <= 1.0
    after = torch.load(tmp_path / "model.pt", weights_only=True)
    assert after.keys() == before.keys()
    trained = ("fc.",) if trains == "fc" else ("layer4.", "fc.")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(trained) for k in changed)
    assert any(k.startswith("fc.") for k in changed)
