"""GET /v1/jobs/{id}/layers: planned epochs until the worker records the model's state."""

from __future__ import annotations

import httpx
import pytest
import redis
from api_fixtures import job_body, problem
from support import new_job

from thaw.store import JobStore

pytestmark = pytest.mark.in_process


def test_planned_layers_match_the_plan(http: httpx.Client) -> None:
    job_id = new_job(http)
    layers = http.get(f"/v1/jobs/{job_id}/layers").json()
    plan = http.post("/v1/plans", json=job_body()).json()
    assert layers["groups"] == plan["groups"]
    assert [e["epoch"] for e in layers["epochs"]] == [1, 2, 3]
    assert {e["source"] for e in layers["epochs"]} == {"planned"}
    for got, planned in zip(layers["epochs"], plan["epochs"], strict=True):
        assert got["layers"] == planned["layers"]
        assert got["trainable_params"] == planned["trainable_params"]
    rows = {r["name"]: r for r in layers["epochs"][1]["layers"]}
    assert rows["layer3.0.conv1"]["trainable"] == "trainable"
    assert rows["layer2.0.conv1"]["trainable"] == "frozen"
    assert "parameters" not in rows["fc"]


def test_recorded_epoch_replaces_the_planned_one(http: httpx.Client, store: redis.Redis) -> None:
    job_id = new_job(http)
    planned = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 1}).json()
    recorded = dict(planned, source=None)
    recorded.pop("source")
    recorded["layers"] = [
        {**row, "changed": row["name"] == "fc", "parameters": [{"name": f"{row['name']}.x"}]}
        for row in planned["layers"]
    ]
    recorded["trainable_params"] = 123
    JobStore(store).save_layer_status(job_id, "epoch:1", recorded)
    one = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 1}).json()
    assert one["source"] == "recorded"
    assert one["trainable_params"] == 123
    fc = next(r for r in one["layers"] if r["name"] == "fc")
    assert fc["changed"] is True
    assert "parameters" not in fc
    every = http.get(f"/v1/jobs/{job_id}/layers").json()
    assert [e["source"] for e in every["epochs"]] == ["recorded", "planned", "planned"]
    detail = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 1, "detail": "params"}).json()
    fc = next(r for r in detail["layers"] if r["name"] == "fc")
    assert fc["parameters"] == [{"name": "fc.x"}]


def test_rows_recorded_with_a_boolean_trainable_read_as_the_strings(
    http: httpx.Client, store: redis.Redis
) -> None:
    job_id = new_job(http)
    planned = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 1}).json()
    recorded = {key: value for key, value in planned.items() if key != "source"}
    recorded["layers"] = [{**row, "trainable": row["trainable"] == "trainable"}
                          for row in planned["layers"]]  # fmt: skip
    JobStore(store).save_layer_status(job_id, "epoch:1", recorded)
    one = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 1}).json()
    assert one["source"] == "recorded"
    assert [r["trainable"] for r in one["layers"]] == [r["trainable"] for r in planned["layers"]]
    assert {r["trainable"] for r in one["layers"]} == {"trainable", "frozen"}


def test_detail_params_lists_each_parameter(http: httpx.Client) -> None:
    job_id = new_job(http)
    body = http.get(f"/v1/jobs/{job_id}/layers", params={"detail": "params"}).json()
    fc = next(r for r in body["epochs"][0]["layers"] if r["name"] == "fc")
    assert [(p["name"], p["shape"], p["requires_grad"]) for p in fc["parameters"]] == [
        ("fc.weight", [4, 512], True),
        ("fc.bias", [4], True),
    ]


def test_epoch_out_of_range_is_404(http: httpx.Client) -> None:
    job_id = new_job(http)
    err = problem(http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 4}), 404)
    assert err["detail"] == "epoch 4 is not an epoch of this job; give ?epoch= between 1 and 3"
    problem(http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 0}), 422)
    problem(http.get(f"/v1/jobs/{job_id}/layers", params={"detail": "all"}), 422)
