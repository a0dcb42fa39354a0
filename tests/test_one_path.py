"""``thaw plan`` and the API resolve a spec through the same functions: equal plans, and the
same field path and message for the same mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_fixtures import ApiServer, problem

pytestmark = pytest.mark.in_process

SPEC = {
    "name": "one-path",
    "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
    "dataset": {"synthetic": {"num_classes": 4, "num_examples": 64}},
    "freeze": {"default": "frozen", "rules": [{"match": "layer4", "trainable": True}]},
    "schedule": [{"at_epoch": 2, "unfreeze": ["layer3"], "lr": 1e-4}],
    "hyperparameters": {"epochs": 3, "batch_size": 16, "lr": 1e-3},
}


def _cli_plan(tmp_path: Path, api: ApiServer, spec: dict[str, Any]) -> subprocess.CompletedProcess:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, **api.settings_env()}
    return subprocess.run(
        [sys.executable, "-m", "thaw.cli", "plan", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_cli_and_api_plans_are_equal(tmp_path: Path, api: ApiServer, http: httpx.Client) -> None:
    done = _cli_plan(tmp_path, api, SPEC)
    assert done.returncode == 0, done.stderr
    response = http.post("/v1/plans", json=SPEC)
    assert response.status_code == 200, response.text
    assert json.loads(done.stdout) == response.json()


@pytest.mark.parametrize(
    ("change", "loc", "code"),
    [
        ({"freeze": {"rules": [{"match": "layer9", "trainable": True}]}}, "freeze.rules[0].match",
         "invalid_selector"),
        ({"schedule": [{"at_epoch": 9, "unfreeze": ["layer3"]}]}, "schedule[0].at_epoch",
         "invalid_spec"),
        ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs", "invalid_request"),
        ({"freeze": {"colour": "red"}}, "freeze.colour", "invalid_request"),
    ],
)  # fmt: skip
def test_a_spec_error_reads_the_same_from_cli_and_api(
    tmp_path: Path,
    api: ApiServer,
    http: httpx.Client,
    change: dict[str, Any],
    loc: str,
    code: str,
) -> None:
    spec = {**SPEC, **change}
    err = problem(http.post("/v1/plans", json=spec), 422)
    assert err["code"] == code
    assert err["errors"][0]["loc"] == loc
    done = _cli_plan(tmp_path, api, spec)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"thaw: error: {err['detail']}\n"
    assert done.stderr.startswith(f"thaw: error: {loc}: ")
