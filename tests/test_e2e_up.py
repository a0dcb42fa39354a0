"""The README's service command, driven over HTTP as curl would: `thaw up` (embedded Redis,
a Celery worker, uvicorn), a dataset upload, a job followed over SSE, layers, checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_fixtures import free_port
from digits import write_digits_folder, zip_folder
from safetensors.torch import load_file
from support import bits_equal
from worker_fixtures import ROOT, digits_spec, write_base_weights

pytestmark = pytest.mark.slow


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`thaw up` on a free port; returns once /readyz answers 200 (a worker heartbeats)."""
    models = tmp_path / "models"
    models.mkdir()
    write_base_weights(models)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "THAW_MODELS_DIR": str(models),
        "THAW_DATASETS_DIR": str(tmp_path / "datasets"),
        "THAW_API_KEYS": "",
        "THAW_PROGRESS_INTERVAL_SECONDS": "0.2",
        "THAW_HEARTBEAT_SECONDS": "1",
    }
    log = (tmp_path / "up.log").open("wb")
    cmd = [
        sys.executable,
        "-m",
        "thaw.cli",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError((tmp_path / "up.log").read_text(errors="replace"))
        time.sleep(0.3)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    proc, url = _start_up(tmp_path)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sigterm_to_thaw_up_stops_redis_worker_and_api(tmp_path):
    proc, url = _start_up(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)  # the parent only, as a service manager would
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(proc.pid), "children outlived thaw up"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def _follow_sse(url: str) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    kind = None
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream"}, timeout=300) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind is not None:
                events.append((kind, json.loads(line.split(":", 1)[1])["data"]))
    return events


def test_upload_train_follow_and_download_over_http(service, tmp_path):
    base = load_file(str(tmp_path / "models" / "resnet18-base.safetensors"))
    folder = write_digits_folder(tmp_path / "digits", per_class=40, size=32)
    archive = zip_folder(folder, tmp_path / "digits.zip")
    with archive.open("rb") as fh:
        up = httpx.post(
            f"{service}/v1/datasets", files={"file": ("digits.zip", fh, "application/zip")}
        )
    assert up.status_code == 201, up.text
    dataset = up.json()
    assert dataset["classes"] == [str(d) for d in range(10)]
    assert dataset["num_examples"] == 400

    spec = digits_spec()
    spec["dataset"] = {"id": dataset["id"]}
    created = httpx.post(f"{service}/v1/jobs", json=spec)
    assert created.status_code == 202, created.text
    job_url = service + created.headers["location"]
    events = _follow_sse(f"{job_url}/events")
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses[-1] == "succeeded", events[-3:]
    assert "running" in statuses
    assert any(kind == "progress" for kind, _ in events)
    assert [data["phase"] for kind, data in events if kind == "phase"] == [1]

    job = httpx.get(job_url).json()
    assert job["status"] == "succeeded" and job["progress"]["fraction"] == 1.0

    one = httpx.get(f"{job_url}/layers", params={"epoch": 1}).json()
    three = httpx.get(f"{job_url}/layers", params={"epoch": 3}).json()
    assert one["source"] == "recorded" and three["source"] == "recorded"
    row1 = {r["name"]: r for r in one["layers"]}
    row3 = {r["name"]: r for r in three["layers"]}
    assert row1["layer3.0.conv1"]["trainable"] == "frozen"
    assert row3["layer3.0.conv1"]["trainable"] == "trainable"
    assert (row3["layer2.0.conv1"]["trainable"], row3["layer2.0.conv1"]["changed"]) == (
        "frozen",
        False,
    )

    listing = httpx.get(f"{job_url}/checkpoints").json()["data"]
    best = next(c for c in listing if c["best"])
    expected = next(f for f in best["files"] if f["name"] == "model.safetensors")
    download = httpx.get(f"{job_url}/checkpoints/best/model.safetensors")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == expected["sha256"]
    assert download.headers["etag"] == f'"{expected["sha256"]}"'
    weights_path = tmp_path / "best.safetensors"
    weights_path.write_bytes(download.content)
    weights = load_file(str(weights_path))
    frozen = [k for k in base if not k.startswith(("layer4.", "fc.", "layer3."))]
    assert [k for k in frozen if not bits_equal(base[k], weights[k])] == []
