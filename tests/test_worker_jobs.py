"""Jobs run by real Celery worker processes over a real Redis, trained on the CPU."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from digits import write_digits_folder
from safetensors.torch import load_file
from support import bits_equal, minilm_dir
from worker_fixtures import Stack, digits_spec, write_base_weights, write_digits

from thaw.freezing.layer_rows import layer_status
from thaw.spec import JobSpec
from thaw.training import train

pytestmark = pytest.mark.slow

TRAINABLE = ("layer4.", "fc.")
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _final(stack: Stack, job_id: str, name: str) -> dict[str, torch.Tensor]:
    path = stack.settings.jobs_dir / job_id / "checkpoints" / name / "model.safetensors"
    return load_file(str(path))


def _status_events(stack: Stack, job_id: str) -> list[dict]:
    return [e.data for e in stack.events.read(job_id, limit=10_000) if e.type == "status"]


def test_digits_job_trains_thaws_layer3_at_epoch_2_and_keeps_frozen_tensors_bitwise(stack):
    base = load_file(str(write_base_weights(stack.root / "models")))
    write_digits(stack.root / "datasets")
    stack.start_worker("w")
    job = stack.submit(digits_spec())
    done = stack.wait_done(job.id)

    assert done.status == "succeeded", done.error
    assert done.attempts == 1
    assert done.metrics["val_accuracy"] > 0.3  # chance is 0.1
    assert done.progress["fraction"] == 1.0
    assert done.progress["wall_s"] > 0 and done.progress["samples_per_s"] > 0
    final = _final(stack, job.id, "epoch-3")
    frozen = [k for k in base if not k.startswith((*TRAINABLE, "layer3."))]
    assert any(k.endswith("running_var") for k in frozen)
    assert [k for k in frozen if not bits_equal(base[k], final[k])] == []
    epoch1 = _final(stack, job.id, "epoch-1")
    layer3 = [k for k in base if k.startswith("layer3.")]
    assert all(bits_equal(base[k], epoch1[k]) for k in layer3)
    assert not torch.equal(base["layer3.0.conv1.weight"], final["layer3.0.conv1.weight"])

    recorded = stack.jobs.load_layer_status(job.id)
    status1 = layer_status(recorded, epoch=1)
    assert status1["source"] == "recorded"
    rows1 = {r["name"]: r for r in status1["layers"]}
    rows3 = {r["name"]: r for r in layer_status(recorded, epoch=3)["layers"]}
    assert rows1["layer3.0.conv1"]["trainable"] == "frozen"
    assert rows1["layer3.0.conv1"]["changed"] is False
    assert rows3["layer3.0.conv1"]["trainable"] == "trainable"
    assert rows3["layer3.0.conv1"]["changed"] is True
    assert rows3["layer2.0.conv1"]["changed"] is False
    assert rows1["layer1.0.bn1"]["mode"] == "eval"
    phases = [e.data for e in stack.events.read(job.id, limit=10_000) if e.type == "phase"]
    layer3_params = [k for k in layer3 if not k.endswith(BN_BUFFERS)]
    assert [(p["phase"], p["thawed_count"]) for p in phases] == [(1, len(layer3_params))]


def _write_text_csv(path: Path) -> None:
    rows = []
    words = {"sport": "match goal team score win", "tech": "code chip cloud data model"}
    for i in range(48):
        label = "sport" if i % 2 else "tech"
        rows.append({"text": f"{words[label]} item {i}", "label": label})
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


def test_minilm_job_fine_tunes_on_csv_with_embeddings_and_lower_layers_frozen(stack, tmp_path):
    stack.models_dir = minilm_dir().parent
    _write_text_csv(stack.root / "datasets" / "news.csv")
    stack.start_worker("w")
    job = stack.submit(
        {
            "base_model": {"source": "huggingface", "name": minilm_dir().name},
            "dataset": {"path": "news.csv"},
            "freeze": {
                "default": "trainable",
                "rules": [
                    {"match": "bert.embeddings", "trainable": False},
                    {"match": "bert.encoder.layer.[0-3]", "trainable": False},
                ],
            },
            "hyperparameters": {"epochs": 1, "batch_size": 8, "max_length": 32, "lr": 1e-4},
        }
    )
    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    base = load_file(str(minilm_dir() / "model.safetensors"))
    final = _final(stack, job.id, "epoch-1")
    lower = ("embeddings.", *(f"encoder.layer.{i}." for i in range(4)))
    frozen = [k for k in base if k.startswith(lower) and f"bert.{k}" in final]
    assert len(frozen) == 5 + 4 * 16  # embeddings: 3 tables + LayerNorm; 16 tensors per layer
    assert [k for k in frozen if not bits_equal(base[k], final[f"bert.{k}"])] == []
    assert not torch.equal(
        base["encoder.layer.5.output.dense.weight"],
        final["bert.encoder.layer.5.output.dense.weight"],
    )
    folder = stack.settings.jobs_dir / job.id / "checkpoints" / "epoch-1"
    record = json.loads((folder / "thaw.json").read_text())
    assert record["source"] == "huggingface" and record["max_length"] == 32
    assert record["classes"] == ["sport", "tech"]
    hf_config = json.loads((folder / "config.json").read_text())  # Hugging Face's own
    assert hf_config["id2label"] == {"0": "sport", "1": "tech"}


def test_killed_worker_job_resumes_on_another_worker_and_matches_an_unbroken_run(stack, tmp_path):
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=80)
    body = digits_spec()
    # a's steps take a quarter second longer, so the kill lands inside the run however fast
    # the cached epochs are; b is up before the kill and must not take the job while a's
    # lease is live.
    worker_a = stack.start_worker("a", preload="slow_steps")
    job = stack.submit(body)
    stack.wait_for(job.id, lambda j: j.status == "running")
    stack.start_worker("b")
    steps_per_epoch = 20  # 800 images, 640 for training, batch 32
    running = stack.wait_for(
        job.id,
        lambda j: j.progress.get("epoch") == 2 and j.progress.get("step", 0) >= steps_per_epoch + 3,
    )
    assert running.status == "running"
    time.sleep(1.0)
    assert [e["worker"] for e in _status_events(stack, job.id) if e["status"] == "running"] == [
        running.worker
    ]
    killed_at = time.time()
    os.killpg(worker_a.pid, signal.SIGKILL)
    worker_a.wait(timeout=10)

    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    runs = [
        e
        for e in stack.events.read(job.id, limit=10_000)
        if e.type == "status" and e.data["status"] == "running"
    ]
    assert len(runs) == 2
    assert runs[1].data["worker"] != runs[0].data["worker"]
    assert int(runs[1].id.split("-")[0]) / 1000 >= killed_at  # stream ids are Redis ms
    logs = [e.data["message"] for e in stack.events.read(job.id, limit=10_000) if e.type == "log"]
    # Epoch 2 reads the feature cache and can end before the kill lands: either checkpoint
    # is a resume point, each in the phase it closed (layer3 thaws as epoch 2 starts).
    resumed = [m for m in logs if m.startswith("resumed from ")]
    assert len(resumed) == 1
    assert resumed[0] in ("resumed from epoch 1 (phase 0)", "resumed from epoch 2 (phase 1)")

    unbroken = tmp_path / "unbroken"
    train(JobSpec.model_validate(body), unbroken, stack.settings)
    expected = load_file(str(unbroken / "checkpoints" / "epoch-3" / "model.safetensors"))
    final = _final(stack, job.id, "epoch-3")
    assert sorted(final) == sorted(expected)
    assert [k for k in expected if not bits_equal(expected[k], final[k])] == []


def test_cancel_running_job_stops_within_a_step_and_keeps_its_checkpoint(stack):
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=80)
    stack.start_worker("w")
    job = stack.submit(digits_spec())
    seen = stack.wait_for(
        job.id, lambda j: j.progress.get("epoch") == 2 and j.progress.get("step", 0) >= 22
    )
    stack.jobs.request_cancel(job.id)
    at_cancel = stack.jobs.get(job.id).progress["step"]
    done = stack.wait_done(job.id)
    assert done.status == "cancelled"
    assert done.progress["step"] <= at_cancel + 1
    assert seen.progress["step"] <= at_cancel
    checkpoints = stack.settings.jobs_dir / job.id / "checkpoints"
    assert (checkpoints / "epoch-1" / "model.safetensors").is_file()
    assert not (checkpoints / "epoch-2").exists()


def test_cancelled_queued_job_never_starts(stack):
    job = stack.submit(digits_spec())  # no worker yet: it waits in the queue
    cancelled = stack.jobs.request_cancel(job.id)
    assert cancelled.status == "cancelled"
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=10)
    stack.start_worker("w")
    follow = stack.submit(digits_spec(epochs=1))
    assert stack.wait_done(follow.id).status == "succeeded"
    assert [e["status"] for e in _status_events(stack, job.id)] == ["queued", "cancelled"]
    assert not (stack.settings.jobs_dir / job.id).exists()


def test_failing_jobs_end_failed_with_a_code_and_the_worker_takes_the_next(stack):
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=10)
    broken = write_digits_folder(stack.root / "datasets" / "broken", per_class=10, size=32)
    (broken / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really an image")
    torch.manual_seed(0)
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(1)}, str(stack.root / "models" / "wrong.safetensors"))
    stack.start_worker("w")

    with_broken = digits_spec(epochs=1)
    with_broken["dataset"] = {"path": "broken"}
    bad_image = stack.submit(with_broken)
    wrong = digits_spec(epochs=1)
    wrong["base_model"]["weights_file"] = "wrong.safetensors"
    bad_weights = stack.submit(wrong)

    first = stack.wait_done(bad_image.id)
    second = stack.wait_done(bad_weights.id)
    assert first.status == "failed"
    assert first.error.code == "undecodable_image"
    assert "broken.png" in first.error.message
    assert second.status == "failed"
    assert second.error.code == "invalid_model"
    assert "does not fit the model" in second.error.message
    good = stack.submit(digits_spec(epochs=1))
    assert stack.wait_done(good.id).status == "succeeded"


def test_long_job_is_not_redelivered_and_dataloader_workers_start_in_the_worker(stack):
    """Redis re-delivers unacked messages after the visibility timeout (celery#5935); the
    task is acked on receipt and the lease decides, so a job far longer than the timeout
    runs once. DataLoader worker processes start (a prefork child could not: celery#1709)."""
    stack.extra_env["THAW_BROKER_VISIBILITY_TIMEOUT"] = "1"
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=40)
    stack.start_worker("w")
    job = stack.submit(digits_spec(epochs=2, num_workers=2, feature_cache="off"))
    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    assert done.attempts == 1
    started = [e for e in _status_events(stack, job.id) if e["status"] == "running"]
    assert len(started) == 1
    finished_at = time.monotonic()
    while time.monotonic() - finished_at < 3:  # past another visibility timeout
        time.sleep(0.5)
    assert [e["status"] for e in _status_events(stack, job.id)] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert "not claimable" not in stack.log("w")
