"""Many hosts, no shared folder: workers and the API on their own data folders, checkpoints
in a real S3-compatible store (SeaweedFS), evaluated, predicted with and exported on a host
that never trained the job."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_fixtures import ApiServer, problem
from digits import write_digits_folder, zip_folder
from safetensors.torch import load_file
from seaweedfs import SeaweedFS
from support import bits_equal
from worker_fixtures import Stack, digits_spec, write_base_weights, write_digits

from thaw.checkpoints.remote import fetch_checkpoint, read_store_index, store_run
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train

pytestmark = pytest.mark.slow

PER_CLASS = 40  # 320 images to train on: 10 steps of 32 per epoch
SPEC = {
    **digits_spec(epochs=2),
    "checkpointing": {"every_epochs": 1, "keep_last": 5, "every_steps": 6},
}


def _host(stack: Stack, name: str, s3: dict[str, str]) -> None:
    """The next worker (or API) started gets a data folder of its own."""
    stack.extra_env = {**s3, "THAW_DATA_DIR": str(stack.root / f"data-{name}")}


def _settings(stack: Stack, s3: dict[str, str], data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        artifacts_url=s3["THAW_ARTIFACTS_URL"],
        artifacts_endpoint=s3["THAW_ARTIFACTS_ENDPOINT"],
        artifacts_access_key_id=s3["THAW_ARTIFACTS_ACCESS_KEY_ID"],
        artifacts_secret_access_key=s3["THAW_ARTIFACTS_SECRET_ACCESS_KEY"],
    )


def test_a_job_moves_hosts_through_the_store_and_the_api_serves_it_from_there(
    stack: Stack, s3_env: dict[str, str]
) -> None:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=PER_CLASS)
    train(JobSpec.model_validate(SPEC), stack.root / "unbroken", stack.settings)
    unbroken = load_file(str(stack.root / "unbroken/checkpoints/epoch-2/model.safetensors"))

    workers = {}
    for name in ("a", "b"):
        _host(stack, name, s3_env)
        workers[name] = stack.start_worker(name, preload="slow_steps")
    job = stack.submit(SPEC)
    remote = store_run(_settings(stack, s3_env, stack.root / "reader"), job.id)
    assert remote is not None
    first = stack.wait_for(job.id, lambda j: j.progress.get("step", 0) >= 12)
    deadline = time.monotonic() + 60
    while (read_store_index(remote.store, remote.prefix)[0].resume or {}).get("step", 0) < 12:
        assert time.monotonic() < deadline, "no resume point of epoch 2 reached the store"
        time.sleep(0.1)
    old = next(
        n for n, p in workers.items() if p.pid == os.getpgid(int(first.worker.split(":")[1]))
    )
    os.killpg(workers[old].pid, signal.SIGKILL)  # mid-epoch 2: the host is gone
    new = "b" if old == "a" else "a"
    fresh = stack.root / f"data-{new}" / "jobs" / job.id
    assert not (fresh / "checkpoints" / "epoch-1").exists()
    assert not (fresh / "resume").exists()
    stored = read_store_index(remote.store, remote.prefix)[0]
    assert stored.last == "epoch-1" and stored.resume is not None
    point = stored.resume["step"]

    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    logs = [e.data["message"] for e in stack.events.read(job.id, limit=10_000) if e.type == "log"]
    resumed = f"resumed from step {point} (epoch 2, batch {point - 10}, phase "
    assert next(m for m in logs if m.startswith("resumed")).startswith(resumed), logs
    index, _ = read_store_index(remote.store, remote.prefix)
    assert (index.names(), index.last, index.token) == (["epoch-1", "epoch-2"], "epoch-2", 2)
    assert index.resume is None  # epoch-2 superseded the resume point: its blobs are gone
    # The worker that finished kept its checkpoints but not its scratch (the store has them).
    assert (fresh / "checkpoints" / "epoch-2").is_dir()
    assert [n for n in ("resume", "feature_cache", "decoded_cache") if (fresh / n).exists()] == []
    blobs = set(remote.store.list(f"{remote.prefix}/blobs/"))
    assert not {f"{remote.prefix}/blobs/{f['sha256']}" for f in stored.resume["files"]} & blobs
    final = fetch_checkpoint(remote.store, remote.prefix, "last", stack.root / "reader")
    weights = load_file(str(final / "model.safetensors"))
    assert [k for k in unbroken if not bits_equal(unbroken[k], weights[k])] == []

    # An API host with an empty data folder lists and serves the checkpoints from the store.
    api = ApiServer(stack.redis_url, stack.root / "api-host", env=dict(s3_env))
    api.start()
    try:
        with api.client() as http:
            # The host that trained the job evaluates it; so does one with an empty data
            # folder once that host is gone, fetching the checkpoint from the store.
            here = _evaluate(http, job.id)
            _host(stack, "c", s3_env)
            stack.start_worker("c")
            os.killpg(workers[new].pid, signal.SIGKILL)
            there = _evaluate(http, job.id)
            assert (there["accuracy"], there["confusion_matrix"]) == (
                here["accuracy"],
                here["confusion_matrix"],
            )
            assert there["checkpoint_folder"] == "epoch-2"
            host_c = stack.root / "data-c"
            assert not (host_c / "jobs" / job.id / "checkpoints").exists()
            assert (host_c / "cache" / job.id / "epoch-2" / "model.safetensors").is_file()
            # An image prediction and an export on host c: the image and the ONNX files
            # travel through the store, which keeps the export's files only.
            png = next((stack.root / "datasets" / "digits").rglob("*.png"))
            predicted = http.post(
                f"/v1/jobs/{job.id}/predictions",
                files=[("files", (png.name, png.read_bytes(), "image/png"))],
                data={"top_k": "2"},
            )
            assert predicted.status_code == 200, predicted.text
            rows = predicted.json()["result"]["predictions"]
            assert [(r["input"], len(r["top"])) for r in rows] == [(png.name, 2)]
            assert remote.store.list(f"runs/{job.id}/predictions/") == []
            assert not (host_c / "jobs" / job.id / "predictions" / predicted.json()["id"]).exists()
            export = _finished(http, http.post(f"/v1/jobs/{job.id}/exports", json={}))
            files = {f["name"]: f for f in export["result"]["files"]}
            prefix = f"runs/{job.id}/exports/{export['id']}/"
            assert remote.store.list(prefix) == sorted(prefix + name for name in files)
            assert not (host_c / "jobs" / job.id / "exports" / export["id"]).exists()
            onnx_url = f"/v1/exports/{export['id']}/files/model.onnx"
            whole = http.get(onnx_url)
            assert whole.status_code == 200
            assert whole.headers["etag"] == f'"{files["model.onnx"]["sha256"]}"'
            assert hashlib.sha256(whole.content).hexdigest() == files["model.onnx"]["sha256"]
            part = http.get(onnx_url, headers={"Range": "bytes=10-19"})
            assert part.status_code == 206 and part.content == whole.content[10:20]
            listed = http.get(f"/v1/jobs/{job.id}/checkpoints").json()["data"]
            assert [c["name"] for c in listed] == ["epoch-2", "epoch-1"]
            model = next(f for f in listed[0]["files"] if f["name"] == "model.safetensors")
            url = f"/v1/jobs/{job.id}/checkpoints/last/model.safetensors"
            half = model["size"] // 2
            head = http.get(url, headers={"Range": f"bytes=0-{half - 1}"})
            assert head.status_code == 206
            assert head.headers["etag"] == f'"{model["sha256"]}"'
            tail = http.get(url, headers={"Range": f"bytes={half}-"})
            assert tail.status_code == 206
            assert hashlib.sha256(head.content + tail.content).hexdigest() == model["sha256"]
    finally:
        api.stop()

    # With presigned downloads the API answers 302 and the store serves the bytes itself.
    signed = ApiServer(
        stack.redis_url,
        stack.root / "api-signed",
        env={**s3_env, "THAW_ARTIFACTS_PRESIGN_SECONDS": "60"},
    )
    signed.start()
    try:
        with signed.client() as http:
            answer = http.get(f"/v1/jobs/{job.id}/checkpoints/best/model.safetensors")
            assert answer.status_code == 302
            body = httpx.get(answer.headers["location"]).content
            assert f'"{hashlib.sha256(body).hexdigest()}"' == answer.headers["etag"]
            answer = http.get(onnx_url)
            assert answer.status_code == 302
            body = httpx.get(answer.headers["location"]).content
            assert hashlib.sha256(body).hexdigest() == files["model.onnx"]["sha256"]
            # Deleting the job deletes its objects in the store.
            assert remote.store.list(f"runs/{job.id}/") != []
            assert http.delete(f"/v1/jobs/{job.id}").status_code == 204
            assert remote.store.list(f"runs/{job.id}/") == []
        assert not (stack.root / "api-signed" / "data" / "cache").exists()
    finally:
        signed.stop()


def _evaluate(http: httpx.Client, job_id: str) -> dict[str, Any]:
    """Evaluate the job's last checkpoint on its validation split; the result."""
    created = http.post(f"/v1/jobs/{job_id}/evaluations", json={"checkpoint": "last"})
    return _finished(http, created)["result"]


def _finished(http: httpx.Client, created: httpx.Response) -> dict[str, Any]:
    """The evaluation or export ``created`` queued, once it succeeded."""
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 120
    while (done := http.get(created.headers["Location"]).json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, done
        time.sleep(0.1)
    assert done["status"] == "succeeded", done
    return done


def test_wrong_credentials_fail_readiness_and_the_job_with_a_clear_code(
    stack: Stack, s3_env: dict[str, str], seaweedfs: SeaweedFS
) -> None:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=10)
    wrong = {**s3_env, "THAW_ARTIFACTS_SECRET_ACCESS_KEY": "not-the-secret"}
    _host(stack, "w", wrong)
    stack.start_worker("w")
    api = ApiServer(stack.redis_url, stack.root / "api-host", env=wrong)
    api.start()
    try:
        with api.client() as http:
            err = problem(http.get("/readyz"), 503)
            assert err["code"] == "artifact_store_credentials"
            assert "THAW_ARTIFACTS_" in err["detail"]
    finally:
        api.stop()
    job = stack.submit(digits_spec(epochs=1))
    done = stack.wait_done(job.id)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.code == "artifact_store_credentials"
    assert "Traceback" not in done.error.message


def test_an_unreachable_store_fails_readiness_with_a_clear_code(
    stack: Stack, s3_env: dict[str, str]
) -> None:
    away = {**s3_env, "THAW_ARTIFACTS_ENDPOINT": "http://127.0.0.1:9"}
    stack.start_worker("w")
    api = ApiServer(
        stack.redis_url,
        stack.root / "api-host",
        env={**away, "THAW_ARTIFACTS_CONNECT_TIMEOUT": "1"},
    )
    api.start()
    try:
        with api.client() as http:
            err = problem(http.get("/readyz"), 503)
            assert err["code"] == "artifact_store_unreachable"
    finally:
        api.stop()


def test_an_upload_through_one_host_trains_on_another_through_the_store(
    stack: Stack, s3_env: dict[str, str]
) -> None:
    write_base_weights(stack.root / "models")
    folder = write_digits_folder(stack.root / "upload", per_class=8)
    archive = zip_folder(folder, stack.root / "digits.zip").read_bytes()
    api = ApiServer(stack.redis_url, stack.root / "api-host", env=dict(s3_env))
    api.start()
    try:
        with api.client() as http:
            answer = http.post("/v1/datasets", files={"file": ("digits.zip", archive)})
            assert answer.status_code == 201, answer.text
            again = http.post("/v1/datasets", files={"file": ("digits.zip", archive)})
            assert (again.status_code, again.json()) == (200, answer.json())
    finally:
        api.stop()
    dataset = answer.json()
    assert dataset["sha256"] == hashlib.sha256(archive).hexdigest()
    # The API keeps no copy: the uploaded file is in the store, once, under its content hash.
    kept = [p for p in api.uploads_dir.rglob("*") if p.is_file()]
    assert kept == []
    remote = store_run(_settings(stack, s3_env, stack.root / "reader"), "x")
    assert remote is not None
    assert [k.rsplit("/", 1)[1] for k in remote.store.list("datasets/")] == [dataset["sha256"]]

    _host(stack, "w", {**s3_env, "THAW_DATASET_CACHE_BYTES": "1"})
    stack.start_worker("w")
    job = stack.submit({**digits_spec(epochs=1), "dataset": {"id": dataset["id"]}})
    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    cache = stack.root / "data-w" / "cache" / "datasets"
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [
        dataset["sha256"]
    ]  # kept while in use, though over the bound of 1 byte
