"""bench/gpu_throughput.py runs end to end in its CPU --smoke mode (the figures themselves
need a GPU host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from worker_fixtures import ROOT


def test_gpu_throughput_smoke_run_reports_the_split_for_both_models(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_throughput.py"), "--smoke", "--json", str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [(r["model"], r["input"], r["device"]) for r in rows] == [
        ("resnet50", "64 px", "cpu"),
        ("minilm", "32 tokens", "cpu"),
    ]
    for row in rows:
        assert row["samples_per_s"] > 0 and row["compute_ms"] > 0 and row["data_wait_ms"] > 0
        assert 0 <= row["data_wait_share"] < 1  # rounded: a fast loader shows 0.0
        assert row["step_ms"] >= row["compute_ms"]
    assert "| resnet50 | 64 px | fp32 | False | 4 |" in proc.stdout


def test_gpu_throughput_without_cuda_says_how_to_run_it():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_throughput.py"), "--models", "resnet50"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "no CUDA device here; run on a GPU host, or pass --smoke"
