"""The ``thaw`` client as separate processes against a real service (Redis, a worker,
uvicorn): upload digits, ``submit --follow`` to the end, logs, layers, and a download that
resumes with Range and checks sha256."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from digits import write_digits_folder, zip_folder
from support import thaw_cli
from worker_fixtures import digits_spec

import thaw

if TYPE_CHECKING:
    from live_stack import Live

pytestmark = pytest.mark.slow


def _thaw(live: Live, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return thaw_cli(live.url, *argv, timeout=timeout)


def test_upload_submit_follow_logs_layers_and_a_resumed_download(live: Live, tmp_path) -> None:
    folder = write_digits_folder(tmp_path / "digits", per_class=20, size=32)
    uploaded = _thaw(live, "datasets", "upload", str(zip_folder(folder, tmp_path / "d.zip")))
    assert uploaded.returncode == 0, uploaded.stderr
    dataset = json.loads(uploaded.stdout)
    assert dataset["num_examples"] == 200

    spec = digits_spec(epochs=3)
    spec["dataset"] = {"id": dataset["id"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = _thaw(live, "submit", str(tmp_path / "spec.json"), "--follow")
    assert run.returncode == 0, run.stderr
    job_id, final = run.stdout.splitlines()
    assert final == f"{job_id} succeeded"
    assert "phase 1 at step " in run.stderr
    assert "15/15" in run.stderr  # the bar reached the last of 3 x 5 steps
    assert [line for line in run.stderr.splitlines() if line.startswith("epoch ")][-1].startswith(
        "epoch 3: val_loss "
    )

    logs = _thaw(live, "logs", job_id)
    kinds = [line.split()[1] for line in logs.stdout.splitlines()]
    assert kinds.count("metrics") == 3 and kinds.count("phase") == 1
    assert "progress" not in kinds

    layers = _thaw(live, "layers", job_id)
    lines = layers.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "1", "2", "3"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert rows["layer3"] == [".", "#", "#"]
    assert rows["layer2"] == [".", ".", "."]
    assert rows["layer4"] == rows["fc"] == ["#", "#", "#"]

    with live.api.client() as http:
        listing = http.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"]
    best = next(c for c in listing if c["best"])
    files = {f["name"]: f for f in best["files"]}
    out = tmp_path / "best"
    got = _thaw(live, "download", job_id, "best", "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    for name in ("config.json", "model.safetensors"):
        assert _sha256(out / name) == files[name]["sha256"]
    model = thaw.load_model(out)
    assert model.fc.out_features == 10

    weights = out / "model.safetensors"
    size = files["model.safetensors"]["size"]
    part = out / "model.safetensors.part"
    part.write_bytes(weights.read_bytes()[: size // 3])
    weights.unlink()
    resumed = _thaw(live, "download", job_id, "best", "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    line = next(x for x in resumed.stdout.splitlines() if "model.safetensors " in x)
    assert f"{size - size // 3} bytes fetched, resumed at byte {size // 3}" in line
    assert _sha256(weights) == files["model.safetensors"]["sha256"] and not part.exists()

    part.write_bytes(b"\0" * 1000)  # a wrong prefix: the checksum catches it, fetched again
    weights.unlink()
    again = _thaw(live, "download", job_id, "best", "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert _sha256(weights) == files["model.safetensors"]["sha256"]

    missing = _thaw(live, "download", job_id, "epoch-9", "-o", str(out))
    assert missing.returncode == 1
    names = ", ".join(c["name"] for c in listing)
    assert missing.stderr == (
        f"Not Found: no checkpoint 'epoch-9'; this job has: {names} (and best, last)\n"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
