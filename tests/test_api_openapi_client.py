"""A client generated from the running API's /openapi.json by openapi-python-client parses
every answer of a user's path: models, a plan, a submitted job to its end, its layers and
its checkpoints."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from worker_fixtures import digits_spec

if TYPE_CHECKING:
    from live_stack import Live

pytestmark = pytest.mark.slow

PACKAGE = "thaw_generated_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture
def generated(live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The generated package, importable for the length of one test."""
    (tmp_path / "openapi.json").write_bytes(httpx.get(f"{live.url}/openapi.json").content)
    (tmp_path / "config.yaml").write_text("post_hooks: []\n")
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", "openapi.json", "--config", "config.yaml",
         "--meta", "none", "--output-path", PACKAGE],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _op(tag: str, name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


def _model(name: str) -> Any:
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def _ok(response: Any) -> Any:
    """The parsed body of a 2xx answer; the generated parser raises on a shape it cannot read."""
    assert 200 <= response.status_code < 300, response.content
    assert response.parsed is not None
    return response.parsed


def test_a_generated_client_runs_models_plan_submit_job_layers_and_checkpoints(
    live: Live, generated: ModuleType
) -> None:
    client = generated.Client(base_url=live.url, raise_on_unexpected_status=True)
    spec = digits_spec(epochs=2)
    body = _model("JobSpec").from_dict(spec)

    models = _ok(_op("models", "list_models_v1_models_get").sync_detailed(client=client))
    torchvision = next(m for m in models.data if m.source == "torchvision")
    assert "resnet18" in torchvision.builders

    plan = _ok(_op("plans", "create_plan_v1_plans_post").sync_detailed(client=client, body=body))
    first = {row.name: row.trainable for row in plan.epochs[0].layers}
    assert (first["fc"], first["layer3.0.conv1"]) == ("trainable", "frozen")

    job = _ok(_op("jobs", "create_job_v1_jobs_post").sync_detailed(client=client, body=body))
    get_job = _op("jobs", "get_job_v1_jobs_job_id_get")
    deadline = time.monotonic() + 300
    while job.status not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = _ok(get_job.sync_detailed(job.id, client=client))
    assert job.status == "succeeded", job.error

    layers = _ok(_op("jobs", "get_layers_v1_jobs_job_id_layers_get").sync_detailed(
        job.id, client=client
    ))  # fmt: skip
    thawed = {row.name: row.trainable for row in layers.epochs[1].layers}
    assert (layers.epochs[1].source, thawed["layer3.0.conv1"]) == ("recorded", "trainable")

    checkpoints = _ok(_op("checkpoints", "get_checkpoints_v1_jobs_job_id_checkpoints_get")
                      .sync_detailed(job.id, client=client))  # fmt: skip
    assert {"epoch-1", "epoch-2"} <= {c.name for c in checkpoints.data}
