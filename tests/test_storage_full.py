"""Disk full is a clear storage_full naming the folder and the bytes needed: checked
before a checkpoint and before a cache spills to a memory-mapped file, with nothing
half-written left behind. A settings-driven reserve makes the check refuse here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from worker_fixtures import Stack, digits_spec, write_base_weights, write_digits

from thaw.caching.decoded import DecodedImages
from thaw.caching.features import FeatureStore
from thaw.disk_space import StorageFull

HUGE = 2**62


def test_the_feature_cache_spill_is_refused_before_its_file_exists(tmp_path: Path) -> None:
    spill = tmp_path / "feature_cache" / "train-layer3.bin"
    with pytest.raises(StorageFull) as err:
        FeatureStore(100, (8, 4, 4), torch.float32, 0, spill, disk_reserve=HUGE)
    assert err.value.code == "storage_full"
    assert f"the feature cache's spill file needs {100 * 128 * 4} bytes in {spill.parent}" in str(
        err.value
    )
    assert not spill.parent.exists()
    assert FeatureStore(100, (8, 4, 4), torch.float32, 0, spill).file == spill  # room: spills


def test_the_decoded_cache_spill_is_refused_before_its_file_exists(tmp_path: Path) -> None:
    spill = tmp_path / "decoded_cache" / "train.u8"
    with pytest.raises(StorageFull, match=rf"needs {10 * 3 * 16 * 16} bytes in"):
        DecodedImages(10, 16, budget=0, spill=spill, disk_reserve=HUGE)
    assert not spill.exists()


@pytest.mark.slow
def test_a_worker_fails_the_job_with_storage_full_and_publishes_nothing(stack: Stack) -> None:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=10)
    stack.extra_env["THAW_DISK_RESERVE_BYTES"] = str(HUGE)
    stack.start_worker("w")
    job = stack.submit(digits_spec(epochs=1))
    done = stack.wait_done(job.id)
    assert done.status == "failed"
    assert done.error.code == "storage_full"
    run = stack.settings.jobs_dir / job.id
    assert "checkpoint epoch-1 needs " in done.error.message
    assert f"bytes in {run / 'checkpoints'} and " in done.error.message
    assert "THAW_DISK_RESERVE_BYTES" in done.error.message
    assert done.attempts == 1
    visible = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert visible in ([], ["index.json"])  # the fence only: no checkpoint, nothing staged
    assert not (run / "resume").exists()
