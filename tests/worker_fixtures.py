"""Real Celery worker processes and job submission for the worker tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from digits import write_digits_folder
from safetensors.torch import save_file

from service.api.queue import enqueuer
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.store import EventLog, Job, JobStore, WorkerRegistry

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    """A data folder, the settings every worker gets, and the workers started so far."""

    root: Path
    redis_url: str
    client: redis.Redis
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    models_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(
            redis_url=self.redis_url,
            data_dir=self.root / "data",
            models_dir=self.models_dir or self.root / "models",
            datasets_dir=self.root / "datasets",
            lease_seconds=3.0,
            heartbeat_seconds=0.5,
            progress_interval_seconds=0.0,
        )

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "THAW_REDIS_URL": s.redis_url,
            "THAW_DATA_DIR": str(s.data_dir),
            "THAW_MODELS_DIR": str(s.models_dir),
            "THAW_DATASETS_DIR": str(s.datasets_dir),
            "THAW_LEASE_SECONDS": str(s.lease_seconds),
            "THAW_HEARTBEAT_SECONDS": str(s.heartbeat_seconds),
            "THAW_PROGRESS_INTERVAL_SECONDS": "0",
            **self.extra_env,
        }

    @property
    def jobs(self) -> JobStore:
        return JobStore(self.client)

    @property
    def events(self) -> EventLog:
        return EventLog(self.client)

    def start_worker(self, name: str, preload: str | None = None) -> subprocess.Popen[bytes]:
        """A `thaw worker` process; returns once it heartbeats into the registry.
        ``preload`` names a module under tests/ the worker imports first (fault injection)."""
        registry = WorkerRegistry(self.client)
        before = len(registry.live_workers())
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        argv = ["worker", "--hostname", f"{name}@test"]
        launcher = ["-m", "thaw.cli"]
        if preload:  # one worker node without the supervisor, so the module loads into it
            argv = ["--hostname", f"{name}@test"]
            launcher = [
                "-c",
                f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import {preload}; "
                "from worker.node import main; sys.exit(main(sys.argv[1:]))",
            ]
        proc = subprocess.Popen(
            [sys.executable, *launcher, *argv],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        deadline = time.monotonic() + 60
        while len(registry.live_workers()) <= before:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start:\n{self.log(name)}")
            time.sleep(0.1)
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def submit(self, body: dict[str, Any]) -> Job:
        spec = JobSpec.model_validate(body)
        job, _ = self.jobs.create("default", spec.normalized(), name=spec.name)
        enqueuer(self.settings)(job.id)
        return job

    def wait_for(self, job_id: str, predicate: Callable[[Job], bool], timeout: float = 180) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.jobs.get(job_id)
            assert job is not None
            if predicate(job):
                return job
            if time.monotonic() > deadline:
                logs = "\n".join(self.log(p) for p in ("a", "b", "w"))
                raise AssertionError(f"timed out waiting on {job_id}: {job.to_dict()}\n{logs}")
            time.sleep(0.05)

    def wait_done(self, job_id: str, timeout: float = 180) -> Job:
        return self.wait_for(job_id, lambda j: j.status.terminal, timeout)

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> Iterator[Stack]:
    s = Stack(tmp_path, redis_url, redis_client)
    for folder in ("data", "models", "datasets"):
        (tmp_path / folder).mkdir()
    try:
        yield s
    finally:
        s.stop()


def write_base_weights(models_dir: Path, name: str = "resnet18-base.safetensors") -> Path:
    """A resnet18 (ImageNet-shaped head) saved as safetensors, as a host without internet has."""
    import torchvision

    torch.manual_seed(123)
    model = torchvision.models.resnet18()
    path = models_dir / name
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_digits(datasets_dir: Path, per_class: int = 60) -> Path:
    return write_digits_folder(datasets_dir / "digits", per_class=per_class, size=32)


def digits_spec(**hp: Any) -> dict[str, Any]:
    """resnet18 on digits: layer4 and fc train, layer3 thaws at epoch 2 (if there is one)."""
    epochs = hp.get("epochs", 3)
    return {
        "name": "digits-resnet18",
        "base_model": {
            "source": "torchvision",
            "name": "resnet18",
            "weights_file": "resnet18-base.safetensors",
        },
        "dataset": {"path": "digits"},
        "freeze": {
            "default": "frozen",
            "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
        },
        "schedule": [{"at_epoch": 2, "unfreeze": ["layer3"], "lr": 1e-3}] if epochs > 1 else [],
        "checkpointing": {"every_epochs": 1, "keep_last": 5},
        "hyperparameters": {
            "epochs": 3,
            "batch_size": 32,
            "image_size": 32,
            "lr": 3e-3,
            "num_workers": 0,
            **hp,
        },
    }
