"""TensorBoard files and MLflow runs hold the curves a run reports; a failing integration
is a warning, never a failed run; integration URIs are checked against the allow-list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from thaw.errors import SpecError
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.submit import plan_spec
from thaw.training import train
from thaw.training.reporter import NullReporter


class Recording(NullReporter):
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.epochs: list[dict[str, float]] = []
        self.phases: list[tuple[int, int]] = []
        self.logs: list[tuple[str, str]] = []

    def progress(self, progress: dict[str, Any]) -> None:
        if "loss" in progress:
            self.steps.append(dict(progress))

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(dict(metrics))

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        self.phases.append((phase, step))

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))


@pytest.fixture(autouse=True)
def _file_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 keeps its file:// store behind this switch."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def _spec(uri: str | None, **overrides: Any) -> JobSpec:
    body: dict[str, Any] = {
        "name": "tiny",
        "base_model": {"source": "torchvision", "name": "resnet18"},
        "dataset": {"synthetic": {"num_classes": 3, "num_examples": 24}},
        "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
        "schedule": [{"at_step": 3, "unfreeze": ["layer4"], "lr": 1e-3}],
        "hyperparameters": {
            "epochs": 2,
            "batch_size": 8,
            "image_size": 32,
            "num_workers": 0,
            "feature_cache": "off",
        },
        "checkpointing": {"keep_last": 1},
    }
    if uri is not None:
        body["integrations"] = [{"type": "mlflow", "tracking_uri": uri, "experiment": "tiny"}]
    body.update(overrides)
    return JobSpec.model_validate(body)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "progress_interval_seconds": 0,
        "integration_uris": f"file://{tmp_path}/",
        **overrides,
    }
    return Settings(**values)


def test_tensorboard_and_mlflow_hold_the_reported_scalars(tmp_path: Path):
    uri = f"file://{tmp_path}/mlruns"
    run_dir = tmp_path / "run"
    reporter = Recording()
    result = train(_spec(uri), run_dir, _settings(tmp_path), reporter)
    assert result.status == "succeeded"
    assert [m for m in reporter.logs if m[0] == "warning"] == []
    assert reporter.phases == [(1, 3)]
    loss = [(s["step"], s["loss"]) for s in reporter.steps]
    groups = len(reporter.steps[-1]["lr"])
    assert groups >= 2  # the group of fc, and the one layer4 joined at step 3
    val = [(int(m["epoch"]), m["val_loss"]) for m in reporter.epochs]

    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    assert [(e.step, e.value) for e in board.Scalars("train/loss")] == [
        (step, pytest.approx(value, rel=1e-6)) for step, value in loss
    ]
    assert [(e.step, e.value) for e in board.Scalars("val/loss")] == [
        (epoch, pytest.approx(value, rel=1e-6)) for epoch, value in val
    ]
    last_group = [(s["step"], s["lr"][-1]) for s in reporter.steps if len(s["lr"]) == groups]
    assert [(e.step, e.value) for e in board.Scalars(f"lr/group_{groups - 1}")] == [
        (step, pytest.approx(value, rel=1e-6)) for step, value in last_group
    ]
    assert board.Tags()["tensors"] == ["thaw/text_summary"]

    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == loss
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert sorted((m.step, m.value) for m in history) == val
    assert run.data.tags["thaw.phase.1"].startswith("step 3:")


def test_a_failing_integration_is_a_warning_and_the_run_succeeds(tmp_path: Path):
    reporter = Recording()
    # /proc takes no new folders: the MLflow file store fails on its first write.
    spec = _spec(
        "file:///proc/thaw-mlruns",
        hyperparameters={"epochs": 1, "batch_size": 8, "image_size": 32, "num_workers": 0},
        schedule=[],
    )
    settings = _settings(tmp_path, integration_uris="file:///proc/")
    result = train(spec, tmp_path / "run", settings, reporter)
    assert result.status == "succeeded"
    warnings = [message for level, message in reporter.logs if level == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("MLflow stopped"), reporter.logs
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").exists()


def test_integration_uris_outside_the_allow_list_are_refused_at_plan(tmp_path: Path):
    settings = _settings(tmp_path)
    with pytest.raises(SpecError) as refused:
        plan_spec(_spec("https://mlflow.example.com/"), settings)
    assert refused.value.path == "integrations[0].tracking_uri"
    assert "THAW_INTEGRATION_URIS" in str(refused.value)
    with pytest.raises(SpecError):
        plan_spec(_spec(f"file://{tmp_path}/x"), _settings(tmp_path, integration_uris=""))
    host = _settings(tmp_path, integration_uris="https://mlflow.example.com")
    for uri, why in (
        (f"file://{tmp_path}/runs/../../etc", "'..'"),
        (f"file://{tmp_path}/runs/%2e%2e/x", "'..'"),
        ("https://user:pw@mlflow.example.com/", "credentials"),
        ("https://mlflow.example.com.evil.org/", "not a URI this server sends to"),
    ):
        with pytest.raises(SpecError, match=why):
            plan_spec(_spec(uri), _settings(tmp_path) if uri.startswith("file") else host)
    plan_spec(_spec("https://mlflow.example.com/api"), host)
    plan_spec(_spec(f"file://{tmp_path}/mlruns"), settings)


def test_integrations_leave_the_spec_fingerprint_alone(tmp_path: Path):
    assert _spec(f"file://{tmp_path}/a").fingerprint() == _spec(None).fingerprint()
