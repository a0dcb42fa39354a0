"""POST/GET/DELETE /v1/jobs over HTTP against a real uvicorn and Redis."""

from __future__ import annotations

import re

import httpx
import pytest
import redis
from api_fixtures import ApiServer, job_body, problem

from thaw.spec import JobSpec
from thaw.store import EventLog, JobStore

pytestmark = pytest.mark.in_process

JOB_ID = re.compile(r"^job_[0-9a-f]{24}$")


def submit(http: httpx.Client, **overrides: object) -> dict:
    response = http.post("/v1/jobs", json=job_body(**overrides))
    assert response.status_code == 202, response.text
    return response.json()


def test_submit_returns_202_with_location_and_normalized_spec(http: httpx.Client) -> None:
    response = http.post("/v1/jobs", json=job_body())
    assert response.status_code == 202, response.text
    job = response.json()
    assert JOB_ID.match(job["id"])
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["attempts"] == 0
    assert job["error"] is None
    assert job["spec"] == JobSpec.model_validate(job_body()).normalized()
    assert job["spec"]["hyperparameters"]["optimizer"] == "adamw"
    assert job["trainable"]["source"] == "planned"
    assert job["trainable"]["trainable_params"] == 8_395_780
    assert job["links"]["events"] == f"/v1/jobs/{job['id']}/events"
    assert "tenant" not in job
    again = http.get(response.headers["location"])
    assert again.status_code == 200
    assert again.json()["id"] == job["id"]


def test_submit_enqueues_the_train_task_on_the_queue(
    http: httpx.Client, store: redis.Redis
) -> None:
    job = submit(http)
    messages = store.lrange("gpu", 0, -1)
    assert len(messages) == 1
    assert job["id"] in messages[0]
    assert "thaw.train" in messages[0]


def test_pydantic_error_names_the_field(http: httpx.Client, store: redis.Redis) -> None:
    body = job_body(freeze={"rules": [{"match": "", "trainable": True}], "colour": "red"})
    err = problem(http.post("/v1/jobs", json=body), 422)
    locs = {e["loc"]: e for e in err["errors"]}
    assert set(locs) == {"freeze.rules[0].match", "freeze.colour"}
    assert locs["freeze.rules[0].match"]["message"] == "String should have at least 1 character"
    assert locs["freeze.colour"]["hint"] == "remove this field; it is not part of the job spec"
    assert err["detail"].startswith("freeze.")
    assert store.dbsize() == 0


def test_schedule_union_errors_drop_the_union_tag(http: httpx.Client) -> None:
    body = job_body(schedule=[{"at_epoch": 0, "unfreeze": ["layer3"]}])
    err = problem(http.post("/v1/jobs", json=body), 422)
    assert [e["loc"] for e in err["errors"]] == ["schedule[0].at_epoch"]
    assert err["detail"] == "schedule[0].at_epoch: Input should be greater than or equal to 1"


def test_selector_matching_nothing_lists_the_closest_names(
    http: httpx.Client, store: redis.Redis
) -> None:
    body = job_body(freeze={"rules": [{"match": "layer5", "trainable": True}]})
    err = problem(http.post("/v1/jobs", json=body), 422)
    assert err["code"] == "invalid_selector"
    [error] = err["errors"]
    assert error["loc"] == "freeze.rules[0].match"
    assert "layer5" in error["message"]
    assert "layer4" in error["closest"]
    assert err["detail"].startswith("freeze.rules[0].match: ")
    assert store.dbsize() == 0


def test_unknown_model_is_refused(http: httpx.Client) -> None:
    body = job_body(base_model={"source": "torchvision", "name": "resnet181"})
    err = problem(http.post("/v1/jobs", json=body), 422)
    assert err["code"] == "invalid_model"
    assert err["errors"][0]["loc"] == "base_model.name"
    assert err["errors"][0]["message"] == "unknown torchvision model 'resnet181'"
    assert "resnet18" in err["errors"][0]["hint"]


def test_schedule_past_the_last_epoch_is_refused(http: httpx.Client) -> None:
    body = job_body(schedule=[{"at_epoch": 9, "unfreeze": ["layer3"]}])
    err = problem(http.post("/v1/jobs", json=body), 422)
    assert err["errors"][0]["loc"] == "schedule[0].at_epoch"
    assert "9" in err["errors"][0]["message"]


def test_unknown_dataset_id_is_refused(http: httpx.Client) -> None:
    body = job_body(dataset={"id": "ds_0123456789abcdef01234567"})
    err = problem(http.post("/v1/jobs", json=body), 422)
    assert err["errors"][0]["loc"] == "dataset.id"
    assert err["errors"][0]["message"] == "no dataset 'ds_0123456789abcdef01234567'"


def test_malformed_json_is_a_problem(http: httpx.Client) -> None:
    response = http.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    err = problem(response, 422)
    assert err["errors"][0]["hint"] == "send a valid JSON document"


def test_idempotency_key_same_body_same_job(http: httpx.Client, store: redis.Redis) -> None:
    headers = {"Idempotency-Key": "abc-1"}
    first = http.post("/v1/jobs", json=job_body(), headers=headers)
    assert first.status_code == 202
    reordered = dict(reversed(list(job_body().items())))
    second = http.post("/v1/jobs", json=reordered, headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["location"] == first.headers["location"]
    assert store.llen("gpu") == 1
    other = http.post("/v1/jobs", json=job_body(name="other"), headers=headers)
    err = problem(other, 422)
    assert err["code"] == "idempotency_conflict"
    assert "abc-1" in err["detail"] and "different request body" in err["detail"]
    assert http.get("/v1/jobs").json()["data"].__len__() == 1


def test_list_pages_newest_first_and_filters_by_status(http: httpx.Client) -> None:
    ids = [submit(http, name=f"job-{i}")["id"] for i in range(5)]
    http.post(f"/v1/jobs/{ids[1]}/cancel").raise_for_status()
    first = http.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["data"]] == [ids[4], ids[3]]
    assert first["has_more"] is True
    second = http.get("/v1/jobs", params={"limit": 2, "after": ids[3]}).json()
    assert [j["id"] for j in second["data"]] == [ids[2], ids[1]]
    third = http.get("/v1/jobs", params={"limit": 2, "after": ids[1]}).json()
    assert [j["id"] for j in third["data"]] == [ids[0]]
    assert third["has_more"] is False
    cancelled = http.get("/v1/jobs", params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["data"]] == [ids[1]]
    queued = http.get("/v1/jobs", params={"status": "queued"}).json()
    assert len(queued["data"]) == 4


def test_list_limit_over_the_maximum_is_422(http: httpx.Client) -> None:
    err = problem(http.get("/v1/jobs", params={"limit": 101}), 422)
    assert err["detail"] == "limit: must be at most 100"
    err = problem(http.get("/v1/jobs", params={"after": "nope"}), 422)
    assert err["code"] == "invalid_cursor"
    err = problem(http.get("/v1/jobs", params={"status": "sleeping"}), 422)
    assert err["errors"][0]["loc"] == "status"


def test_cancel_queued_job_then_delete_removes_artifacts(
    api: ApiServer, http: httpx.Client, store: redis.Redis
) -> None:

    job = submit(http)
    artifacts = api.jobs_dir / job["id"]
    (artifacts / "checkpoints").mkdir(parents=True)
    (artifacts / "checkpoints" / "x.bin").write_bytes(b"1")
    err = problem(http.delete(f"/v1/jobs/{job['id']}"), 409)
    assert err["detail"] == f"job {job['id']} is queued; cancel it and wait until it stops first"
    assert artifacts.exists()
    cancelled = http.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    statuses = [e.data["status"] for e in EventLog(store).read(job["id"])]
    assert statuses == ["queued", "cancelled"]
    deleted = http.delete(f"/v1/jobs/{job['id']}")
    assert deleted.status_code == 204
    assert not artifacts.exists()
    problem(http.get(f"/v1/jobs/{job['id']}"), 404)
    problem(http.delete(f"/v1/jobs/{job['id']}"), 404)


def test_cancel_running_job_sets_the_flag(http: httpx.Client, store: redis.Redis) -> None:
    job = submit(http)
    JobStore(store).claim(job["id"], "w1", 60)
    body = http.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert body["status"] == "running"
    assert body["cancel_requested"] is True


def test_unknown_and_malformed_job_ids_are_404(http: httpx.Client) -> None:
    err = problem(http.get("/v1/jobs/job_0123456789abcdef01234567"), 404)
    assert err["detail"] == "no job 'job_0123456789abcdef01234567'"
    problem(http.get("/v1/jobs/..%2F..%2Fetc"), 404)
    problem(http.post("/v1/jobs/nope/cancel"), 404)
