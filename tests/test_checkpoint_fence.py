"""The checkpoint commit is fenced through to visibility: a holder that stalls after its
lease check publishes nothing once a newer claim has raised the run's fence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import thaw.checkpoints.store as store
from thaw.checkpoints import (
    FencedOut,
    find_checkpoint,
    list_checkpoints,
    raise_fence,
    save_checkpoint,
)
from thaw.checkpoints.layout import read_step_meta
from thaw.checkpoints.step import save_step_checkpoint
from thaw.disk_space import StorageFull


def _state(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 4), value)}


def _save(run: Path, epoch: int, token: int, fence=None, **kw):
    return save_checkpoint(
        run,
        epoch=epoch,
        step=epoch * 10,
        model_state=_state(float(epoch)),
        config={"source": "test"},
        training_state={"epoch": epoch},
        metrics={"val_loss": 1.0 / epoch},
        keep_last=3,
        fence=fence or (lambda: token),
        **kw,
    )


def _on_disk(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_a_holder_stalled_between_its_lease_check_and_the_publish_makes_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    raise_fence(run, 1)
    _save(run, 1, 1)
    real_publish = store.publish

    def stalled(*args, **kwargs):  # written and checked, then stalled: meanwhile a new
        raise_fence(run, 2)  # claim takes the job and raises the run folder's fence
        return real_publish(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(store, "publish", stalled)
        with pytest.raises(FencedOut, match="claim 1 no longer holds"):
            _save(run, 2, 1)
    assert [c.name for c in list_checkpoints(run)] == ["epoch-1"]
    assert _on_disk(run) == ["best", "epoch-1", "index.json", "last"]  # nothing staged left
    assert find_checkpoint(run, "last").name == "epoch-1"
    assert json.loads((run / "checkpoints" / "index.json").read_text())["token"] == 2

    # The new holder resumes from epoch-1 and publishes epoch-2 under its own token.
    info = _save(run, 2, 2)
    assert (info.name, info.last) == ("epoch-2", True)
    meta = json.loads((run / "checkpoints" / "epoch-2" / "meta.json").read_text())
    assert meta["token"] == 2
    with pytest.raises(FencedOut):  # the old holder, woken later, still writes nothing
        _save(run, 3, 1)
    with pytest.raises(FencedOut):
        raise_fence(run, 1)
    assert [c.name for c in list_checkpoints(run)] == ["epoch-1", "epoch-2"]
    assert _on_disk(run) == ["best", "epoch-1", "epoch-2", "index.json", "last"]


def test_the_publish_confirms_the_claim_under_the_commit_lock(tmp_path: Path) -> None:
    """A new claim that has not reached the run folder yet still wins: the job store's
    answer, asked under the lock, refuses the old holder's publish."""
    run = tmp_path / "run"
    raise_fence(run, 1)
    _save(run, 1, 1)
    calls = []

    def lease_check() -> int:
        calls.append(1)
        if len(calls) == 2:  # the check the publish makes
            raise FencedOut("job j: claim 1 no longer holds the job")
        return 1

    with pytest.raises(FencedOut):
        _save(run, 2, 1, fence=lease_check)
    assert len(calls) == 2
    assert [c.name for c in list_checkpoints(run)] == ["epoch-1"]
    assert _on_disk(run) == ["best", "epoch-1", "index.json", "last"]


def test_a_stale_step_checkpoint_never_replaces_the_new_holders_resume_point(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    raise_fence(run, 1)
    save_step_checkpoint(
        run, epoch=1, batch=2, step=2, model_state=_state(1.0), training_state={}, fence=lambda: 1
    )
    raise_fence(run, 2)
    save_step_checkpoint(
        run, epoch=1, batch=5, step=5, model_state=_state(2.0), training_state={}, fence=lambda: 2
    )
    with pytest.raises(FencedOut):
        save_step_checkpoint(
            run,
            epoch=1,
            batch=7,
            step=7,
            model_state=_state(3.0),
            training_state={},
            fence=lambda: 1,
        )
    meta = read_step_meta(run)
    assert (meta["step"], meta["token"]) == (5, 2)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "resume"]


def test_a_save_that_would_leave_less_than_the_reserve_free_is_storage_full(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    _save(run, 1, 1)
    with pytest.raises(StorageFull) as err:
        _save(run, 2, 1, reserve_bytes=2**62)
    assert err.value.code == "storage_full" and err.value.status == 507
    message = str(err.value)
    assert f"checkpoint epoch-2 needs {16 * 4} bytes in {run / 'checkpoints'}" in message
    assert "THAW_DISK_RESERVE_BYTES" in message
    assert [c.name for c in list_checkpoints(run)] == ["epoch-1"]
    assert _on_disk(run) == ["best", "epoch-1", "index.json", "last"]
