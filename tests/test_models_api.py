"""The model endpoints and the spec refuse hostile names with a 422 naming the field."""

from __future__ import annotations

import httpx
import pytest
from api_fixtures import job_body, problem

pytestmark = pytest.mark.in_process


@pytest.mark.parametrize("name", ["res\x00net18", "r" * 5000])
def test_model_layers_refuses_nul_and_overlong_names(http: httpx.Client, name: str) -> None:
    for source in ("torchvision", "timm", "huggingface"):
        response = http.get("/v1/models/layers", params={"source": source, "name": name})
        err = problem(response, 422)
        assert [e["loc"] for e in err["errors"]] == ["name"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "tiny\x00vit"),
        ("name", "m" * 5000),
        ("weights_file", "w\x00.safetensors"),
        ("weights_file", "w" * 5000),
    ],
)
def test_plans_refuse_nul_and_overlong_model_values(
    http: httpx.Client, field: str, value: str
) -> None:
    for source in ("timm", "huggingface"):
        base = {"source": source, "name": "model", field: value}
        err = problem(http.post("/v1/plans", json=job_body(base_model=base)), 422)
        assert [e["loc"] for e in err["errors"]] == [f"base_model.{field}"]


def test_timm_layers_and_hub_names_without_a_local_folder(http: httpx.Client) -> None:
    response = http.get("/v1/models/layers", params={"source": "timm", "name": "convnext_tiny"})
    assert response.status_code == 200, response.text
    assert [g["name"] for g in response.json()["groups"]][-1] == "head"
    err = problem(
        http.get("/v1/models/layers", params={"source": "huggingface", "name": "google/vit"}),
        422,
    )
    assert err["errors"][0]["loc"] == "name"
    assert err["errors"][0]["message"] == (
        "no Hugging Face model folder 'google/vit' under THAW_MODELS_DIR"
    )
    err = problem(
        http.get("/v1/models/layers", params={"source": "timm", "name": "convnext_tinyy"}), 422
    )
    assert err["errors"][0]["message"].startswith("unknown timm model 'convnext_tinyy'")
