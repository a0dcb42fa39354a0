"""Resource budgets decided at submit from the plan, and the run held to its host memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import torch
import torch.nn.functional as F
from api_fixtures import job_body, problem

from thaw.data.build import Synthetic, build_datasets
from thaw.errors import SpecError
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.submit import plan_spec
from thaw.training.memory import HostMemoryBudget, resident_bytes
from thaw.training.run import train

# The reproduction: a ~1 KB spec that made a worker allocate ~18 GB.
HUGE = {
    "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
    "dataset": {"synthetic": {"num_classes": 1000, "num_examples": 1_000_000}},
    "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
    "hyperparameters": {
        "epochs": 2,
        "batch_size": 8,
        "image_size": 1024,
        "augment": "flip",
        "num_workers": 0,
    },
}


def tiny(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
        "dataset": {"synthetic": {"num_classes": 3, "num_examples": 24}},
        "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
        "hyperparameters": {
            "epochs": 1,
            "batch_size": 4,
            "image_size": 32,
            "num_workers": 0,
            "feature_cache": "off",
        },
    }
    body.update(overrides)
    return body


def refused(body: dict[str, Any], **settings: Any) -> SpecError:
    with pytest.raises(SpecError) as caught:
        plan_spec(JobSpec.model_validate(body), Settings(**settings))
    return caught.value


def test_synthetic_images_hold_no_full_size_pattern_per_class() -> None:
    """The 17.8 GB: 1000 class patterns at full size, once per split, made up front."""
    before = resident_bytes()
    data = build_datasets(Synthetic(1000, 4000), modality="image", image_size=256, seed=3)
    grown = (resident_bytes() or 0) - (before or 0)
    assert before is not None
    # The patterns at full size were 2 x 1000 x 3 x 256^2 floats = 1.5 GiB.
    assert grown < 64 * 2**20, grown
    coarse = torch.randn(1000, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    for label in (0, 517, 999):
        full = F.interpolate(coarse[label : label + 1], size=(256, 256), mode="bilinear")[0]
        assert torch.equal(data.train.prototype(label), full)
    image, label = data.val[5]
    assert image.shape == (3, 256, 256) and 0 <= label < 1000


@pytest.mark.parametrize("examples", [1_000_000, 20_000])
def test_the_reproduction_is_refused_at_plan_time_naming_the_field(examples: int) -> None:
    """With 20,000 examples the worker made two 33.5 GB memory-mapped files."""
    body = {**HUGE, "dataset": {"synthetic": {"num_classes": 1000, "num_examples": examples}}}
    err = refused(body)
    assert err.loc == ("hyperparameters", "image_size")
    assert "THAW_MAX_JOB_FEATURE_CACHE_BYTES=68719476736" in err.message
    assert "feature_cache to 'off'" in (err.hint or "")


def test_plan_states_the_budget_and_checkpoint_bytes_match_what_is_written(
    tmp_path: Path,
) -> None:
    spec = JobSpec.model_validate(tiny())
    settings = Settings(data_dir=tmp_path / "data")
    resources = plan_spec(spec, settings)["resources"]
    assert resources["host_memory_limit"] == settings.max_job_host_memory_bytes
    assert 0 < resources["gpu_memory_bytes"] < resources["host_memory_bytes"]
    assert resources["feature_cache"] == {"bytes": 0, "memory_bytes": 0, "disk_bytes": 0}
    checkpoints = resources["checkpoints"]
    assert checkpoints["saves_kept"] == 2  # one epoch, plus the best
    train(spec, tmp_path / "run", settings, device="cpu")
    folder = tmp_path / "run" / "checkpoints" / "epoch-1"
    written = sum(f.stat().st_size for f in folder.iterdir())
    assert 0.9 * written < checkpoints["bytes_per_save"] < 1.1 * written


def test_feature_cache_memory_and_disk_follow_the_settings() -> None:
    body = tiny(hyperparameters={"epochs": 1, "batch_size": 4, "image_size": 32})
    spec = JobSpec.model_validate(body)
    cache = plan_spec(spec, Settings(feature_cache_bytes=1000))["resources"]["feature_cache"]
    assert cache["bytes"] > 1000 and cache["memory_bytes"] == 1000
    assert cache["disk_bytes"] == cache["bytes"] - 1000
    err = refused(body, max_job_disk_bytes=cache["disk_bytes"], feature_cache_bytes=1000)
    assert err.loc == ("checkpointing", "keep_last")  # checkpoints dominate this job's disk
    assert "THAW_MAX_JOB_DISK_BYTES" in err.message


@pytest.mark.parametrize(
    ("setting", "loc"),
    [
        ("max_job_host_memory_bytes", ("hyperparameters", "batch_size")),
        ("max_job_gpu_memory_bytes", ("hyperparameters", "batch_size")),
        ("max_job_checkpoint_bytes", ("checkpointing", "keep_last")),
    ],
)
def test_each_figure_past_its_setting_names_the_field_to_lower(
    setting: str, loc: tuple[str, str]
) -> None:
    err = refused(tiny(), **{setting: 1000})
    assert err.loc == loc
    assert f"THAW_{setting.upper()}=1000" in err.message


def test_every_steps_and_keep_last_are_bounded() -> None:
    err = refused(tiny(checkpointing={"every_steps": 1}))
    assert err.loc == ("checkpointing", "every_steps")
    assert "THAW_MIN_CHECKPOINT_EVERY_STEPS" in err.message and "50" in err.message
    err = refused(tiny(checkpointing={"keep_last": 1000}))
    assert err.loc == ("checkpointing", "keep_last")
    assert "at most 20 (THAW_MAX_KEEP_LAST)" in err.message
    ok = Settings(min_checkpoint_every_steps=1, max_keep_last=1000)
    plan_spec(JobSpec.model_validate(tiny(checkpointing={"every_steps": 1})), ok)


def test_submit_refuses_what_the_plan_refuses_and_stores_nothing(
    http: httpx.Client, store: redis.Redis
) -> None:
    for body in (HUGE, job_body(checkpointing={"every_steps": 1, "keep_last": 2})):
        planned = problem(http.post("/v1/plans", json=body), 422)
        submitted = problem(http.post("/v1/jobs", json=body), 422)
        assert planned["errors"] == submitted["errors"]
        assert planned["detail"] == submitted["detail"]
    assert submitted["errors"][0]["loc"] == "checkpointing.every_steps"
    assert store.dbsize() == 0
    plan = http.post("/v1/plans", json=job_body()).json()
    assert plan["resources"]["checkpoints"]["bytes_per_save"] > 44_000_000


_GROWTH = """
from thaw.training.memory import HostMemoryBudget, MemoryWatch
with MemoryWatch(32 * 2**20, batch_size=8) as watch:
    watch.check()
    block = bytearray(96 * 2**20)
    block[::4096] = b"\\x01" * len(block[::4096])
    try:
        watch.check()
    except HostMemoryBudget as caught:
        print(caught.code, caught.status, caught)
"""


def test_memory_watch_fails_growth_past_the_budget() -> None:
    # A process of its own: in the suite's process, memory other tests free while this one
    # allocates would hide the growth it measures.
    out = subprocess.run(
        [sys.executable, "-c", _GROWTH], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.startswith("out_of_memory 507 out of memory: the run's host memory grew by 9")
    assert "THAW_MAX_JOB_HOST_MEMORY_BYTES" in out


def test_a_run_past_its_host_memory_budget_fails_as_out_of_memory(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(tiny())
    settings = Settings(data_dir=tmp_path / "data", max_job_host_memory_bytes=1024)
    with pytest.raises(HostMemoryBudget) as caught:
        train(spec, tmp_path / "run", settings, device="cpu")
    assert caught.value.code == "out_of_memory"
    assert "budget of 1024 bytes (THAW_MAX_JOB_HOST_MEMORY_BYTES)" in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints" / "epoch-1").exists()
