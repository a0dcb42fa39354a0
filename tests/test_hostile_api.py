"""Issue 8 against a live API: hostile or malformed requests get a 4xx naming the field, and
never stall the service."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from api_fixtures import ApiServer, job_body, problem

from thaw.store.keys import Keys

pytestmark = pytest.mark.in_process


def test_parallel_catastrophic_regex_plans_fail_fast_and_health_answers(api: ApiServer) -> None:
    body = job_body(freeze={"rules": [{"match": "re:(.*){9}X", "trainable": True}]})

    def plan(_: int) -> httpx.Response:
        with api.client() as client:
            return client.post("/v1/plans", json=body)

    with ThreadPoolExecutor(3) as pool, api.client() as client:
        futures = [pool.submit(plan, i) for i in range(3)]
        assert client.get("/healthz").status_code == 200
        responses = [f.result() for f in futures]
    for response in responses:
        err = problem(response, 422)
        assert err["code"] == "invalid_selector"
        assert err["errors"][0]["loc"] == "freeze.rules[0].match"
        assert err["errors"][0]["message"] == "selector 're:(.*){9}X' matches no parameter"


def _raw_json(http: httpx.Client, path: str, text: str) -> httpx.Response:
    return http.post(path, content=text, headers={"Content-Type": "application/json"})


def _with(hp_or_schedule: str) -> str:
    """A minimal spec as JSON text, with a fragment that JSON encoders refuse to write."""
    return (
        '{"base_model": {"source": "torchvision", "name": "resnet18"}, '
        '"dataset": {"synthetic": {"num_classes": 4, "num_examples": 16}}, '
        f"{hp_or_schedule}}}"
    )


@pytest.mark.parametrize(
    ("fragment", "loc"),
    [
        ('"schedule": [{"at_epoch": 2, "unfreeze": ["fc"], "lr_mult": Infinity}]',
         "schedule[0].lr_mult"),
        ('"hyperparameters": {"param_groups": [{"match": "fc", "lr": Infinity}]}',
         "hyperparameters.param_groups[0].lr"),
        ('"hyperparameters": {"weight_decay": Infinity}', "hyperparameters.weight_decay"),
        ('"hyperparameters": {"grad_clip_norm": NaN}', "hyperparameters.grad_clip_norm"),
        ('"hyperparameters": {"lr": -Infinity}', "hyperparameters.lr"),
        ('"metadata": {"score": Infinity}', "metadata"),
    ],
)  # fmt: skip
def test_non_finite_numbers_are_a_422_naming_the_field(
    http: httpx.Client, fragment: str, loc: str
) -> None:
    for path in ("/v1/plans", "/v1/jobs"):
        err = problem(_raw_json(http, path, _with(fragment)), 422)
        assert err["errors"][0]["loc"] == loc, err
    assert http.get("/v1/jobs").json()["data"] == []


def test_seed_and_dataset_path_bounds(http: httpx.Client) -> None:
    err = problem(http.post("/v1/jobs", json=job_body(hyperparameters={"seed": 2**70})), 422)
    assert err["errors"][0]["loc"] == "hyperparameters.seed"
    assert err["errors"][0]["message"] == "Input should be less than or equal to 4294967295"
    for path, message in [
        ("a\x00b", "must not contain control characters such as NUL; give a plain name"),
        ("d" * 5000, "String should have at most 1024 characters"),
    ]:
        err = problem(http.post("/v1/plans", json=job_body(dataset={"path": path})), 422)
        assert err["errors"][0]["loc"] == "dataset.path"
        assert err["errors"][0]["message"] == message
        assert len(err["detail"]) < 400


def test_model_layers_name_with_nul_or_too_long_is_a_422(http: httpx.Client) -> None:
    for name in ("resnet\x0018", "r" * 5000):
        response = http.get("/v1/models/layers", params={"source": "torchvision", "name": name})
        err = problem(response, 422)
        assert err["errors"][0]["loc"] in ("name", "base_model.name")
        assert len(response.text) < 2000


def test_event_cursors_above_64_bits(http: httpx.Client) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    err = problem(
        http.get(f"/v1/jobs/{job_id}/events", params={"after": "18446744073709551616"}), 422
    )
    assert err["detail"] == (
        "invalid cursor '18446744073709551616': expected an event id such as 1700000000000-0"
    )
    assert http.get(
        f"/v1/jobs/{job_id}/events", params={"after": "18446744073709551615-0"}
    ).json() == {"data": [], "has_more": False}
    stream = http.get(
        f"/v1/jobs/{job_id}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": "99999999999999999999-0"},
    )
    assert problem(stream, 422)["code"] == "invalid_cursor"  # the rule of ?after=


def test_text_uploads_that_broke_the_parsers_are_422(http: httpx.Client) -> None:
    header = "text," + "x" * 131_073 + ",label\nhello,a,b\n"
    response = http.post("/v1/datasets", files={"file": ("wide.csv", header.encode())})
    err = problem(response, 422)
    assert err["code"] == "bad_format"
    assert err["detail"] == (
        "'wide.csv' line 1: the header cannot be read (field larger than field limit "
        "(131072)); write a header of 'text,label'"
    )
    nested = "[" * 100_000 + "]" * 100_000
    rows = "\n".join([nested] + [json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(8)])
    err = problem(http.post("/v1/datasets", files={"file": ("deep.jsonl", rows.encode())}), 422)
    assert "line 1" in err["detail"] and "JSON nested too deeply" in err["detail"]


def test_json_body_over_the_limit_is_a_413(http: httpx.Client) -> None:
    body = job_body(name="x")
    text = json.dumps(body)[:-1] + ', "pad": "' + "p" * (1024**2) + '"}'
    err = problem(_raw_json(http, "/v1/jobs", text), 413)
    assert err["code"] == "body_too_large"
    assert err["detail"] == (
        "the request body is larger than 1048576 bytes (THAW_MAX_JSON_BODY_BYTES); "
        "send a smaller document"
    )

    def chunks():
        yield text[: len(text) // 2].encode()
        yield text[len(text) // 2 :].encode()

    streamed = http.post(
        "/v1/plans", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert problem(streamed, 413)["code"] == "body_too_large"
    assert http.get("/v1/jobs").json()["data"] == []


def test_gradual_preset_with_10000_epochs_is_bounded(http: httpx.Client) -> None:
    body = job_body(schedule=[{"preset": "gradual"}], hyperparameters={"epochs": 10000})
    response = http.post("/v1/jobs", json=body)
    err = problem(response, 422)
    assert err["errors"][0]["loc"] == "hyperparameters.epochs"
    assert err["errors"][0]["message"] == (
        "10000 epochs x 41 layers is 410000 rows of layer status; at most 100000 "
        "(THAW_MAX_PLAN_ROWS)"
    )
    assert err["errors"][0]["hint"] == "use at most 2439 epochs with this model"
    assert len(response.content) < 2000


def test_queued_jobs_per_tenant_are_capped_with_retry_after(
    http: httpx.Client, store: redis.Redis
) -> None:
    first = http.post("/v1/jobs", json=job_body())
    assert first.status_code == 202
    key = Keys().jobs_by_tenant_status("default", "queued")
    store.zadd(key, {f"job_{i:024x}": 0 for i in range(99)})  # 100 queued in all
    response = http.post("/v1/jobs", json=job_body(name="one-more"))
    err = problem(response, 429)
    assert err["code"] == "too_many_queued_jobs"
    assert response.headers["Retry-After"] == "30"
    assert "THAW_MAX_QUEUED_JOBS_PER_TENANT" in err["detail"]
    store.zrem(key, *[f"job_{i:024x}" for i in range(99)])
    assert http.post("/v1/jobs", json=job_body(name="one-more")).status_code == 202


def test_long_ids_are_not_echoed(http: httpx.Client) -> None:
    long_id = "job_" + "a" * 60_000
    response = http.get(f"/v1/jobs/{long_id}")
    err = problem(response, 404)
    assert err["detail"] == f"no job '{long_id[:64]}...'"
    assert len(response.content) < 1000
