"""POST /v1/plans and the model endpoints."""

from __future__ import annotations

import time

import httpx
import pytest
import redis
from api_fixtures import job_body, problem

pytestmark = pytest.mark.in_process


def test_plan_returns_the_table_and_creates_nothing(http: httpx.Client, store: redis.Redis) -> None:
    response = http.post("/v1/plans", json=job_body())
    assert response.status_code == 200, response.text
    plan = response.json()
    assert [g["name"] for g in plan["groups"]][:2] == ["stem", "layer1"]
    assert [e["epoch"] for e in plan["epochs"]] == [1, 2, 3]
    assert plan["epochs"][0]["trainable_params"] == 8_395_780
    assert plan["epochs"][1]["trainable_params"] > plan["epochs"][0]["trainable_params"]
    row = next(r for r in plan["epochs"][0]["layers"] if r["name"] == "layer4.0.conv1")
    assert row == {
        "name": "layer4.0.conv1", "type": "Conv2d", "group": 4, "params": 1_179_648,
        "trainable_params": 1_179_648, "trainable": "trainable", "lr": 0.001, "mode": "train",
        "thawed_in": 0,
    }  # fmt: skip
    assert plan["warnings"] == []
    assert store.dbsize() == 0
    assert http.get("/v1/jobs").json()["data"] == []


def test_plan_errors_name_the_field(http: httpx.Client) -> None:
    err = problem(http.post("/v1/plans", json=job_body(freeze={"default": "melted"})), 422)
    assert err["errors"][0]["loc"] == "freeze.default"
    assert err["errors"][0]["message"] == "Input should be 'frozen' or 'trainable'"


def test_plan_for_resnet50_is_fast_when_warm(http: httpx.Client) -> None:
    body = job_body(base_model={"source": "torchvision", "name": "resnet50"})
    assert http.post("/v1/plans", json=body).status_code == 200
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        assert http.post("/v1/plans", json=body).status_code == 200
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[2] < 0.25, timings


def test_models_lists_sources(http: httpx.Client) -> None:
    body = http.get("/v1/models").json()
    sources = {s["source"]: s for s in body["data"]}
    assert set(sources) == {"torchvision", "timm", "huggingface", "job"}
    assert "resnet18" in sources["torchvision"]["builders"]


def test_model_layers(http: httpx.Client) -> None:
    response = http.get(
        "/v1/models/layers", params={"source": "torchvision", "name": "resnet18", "num_classes": 3}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["head"] == "fc"
    assert [g["name"] for g in body["groups"]] == [
        "stem", "layer1", "layer2", "layer3", "layer4", "fc",
    ]  # fmt: skip
    fc = next(row for row in body["layers"] if row["name"] == "fc")
    assert fc["type"] == "Linear"
    assert fc["parameters"] == [
        {"name": "fc.weight", "shape": [3, 512]},
        {"name": "fc.bias", "shape": [3]},
    ]
    assert body["total_params"] == sum(row["params"] for row in body["layers"])
    err = problem(
        http.get("/v1/models/layers", params={"source": "torchvision", "name": "resnet181"}), 422
    )
    assert err["errors"][0]["loc"] == "name"
    assert err["errors"][0]["message"] == "unknown torchvision model 'resnet181'"
    problem(http.get("/v1/models/layers", params={"source": "keras", "name": "x"}), 422)
