"""Inputs that once answered 500 or were taken silently, each against a live API on
127.0.0.1: a long multipart boundary, the largest event cursor, a Range of 5000 digits,
an invalid Last-Event-ID, and HEAD wherever GET answers."""

from __future__ import annotations

import httpx
import pytest
import torch
from api_fixtures import ApiServer, job_body, problem

from thaw.checkpoints import save_checkpoint

pytestmark = pytest.mark.in_process

LARGEST_EVENT_ID = "18446744073709551615-18446744073709551615"


def test_a_257_character_multipart_boundary_is_a_422(api: ApiServer, http: httpx.Client) -> None:
    boundary = "b" * 257
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
        f"\r\ntext,label\r\n--{boundary}--\r\n"
    ).encode()
    response = http.post(
        "/v1/datasets",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    err = problem(response, 422)
    assert err["code"] == "invalid_upload"
    assert err["detail"] == (
        "the multipart boundary is 257 characters; at most 256 (RFC 2046 asks for 70 or fewer)"
    )
    assert not (api.uploads_dir / ".incoming").exists() or not any(
        (api.uploads_dir / ".incoming").iterdir()
    )


def test_the_largest_event_cursor_reads_nothing_in_a_page_and_a_stream(
    http: httpx.Client,
) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    http.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    url = f"/v1/jobs/{job_id}/events"
    assert http.get(url, params={"after": LARGEST_EVENT_ID}).json() == {
        "data": [],
        "has_more": False,
    }
    for headers, params in (
        ({"Last-Event-ID": LARGEST_EVENT_ID}, {}),
        ({}, {"after": LARGEST_EVENT_ID}),
    ):
        stream = http.get(url, params=params, headers={"Accept": "text/event-stream", **headers})
        assert stream.status_code == 200
        assert stream.text == "retry: 2000\n\n"  # nothing follows the largest id; it ends


@pytest.mark.parametrize("value", ["abc", "-1-0", "18446744073709551616", "1-2-3", "9" * 60])
def test_an_invalid_last_event_id_is_a_422_like_after(http: httpx.Client, value: str) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    response = http.get(
        f"/v1/jobs/{job_id}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": value},
    )
    err = problem(response, 422)
    assert err["code"] == "invalid_cursor"
    assert err["errors"][0]["loc"] == "Last-Event-ID"
    assert err["detail"] == (
        "Last-Event-ID: is not an event id such as 1700000000000-0 "
        "(each part at most 18446744073709551615)"
    )
    page = http.get(f"/v1/jobs/{job_id}/events", params={"after": value})
    assert problem(page, 422)["code"] in ("invalid_cursor", "invalid_request")


@pytest.fixture
def checkpoint_url(api: ApiServer, http: httpx.Client) -> str:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    save_checkpoint(
        api.jobs_dir / job_id,
        epoch=1,
        step=4,
        model_state={"w": torch.arange(256, dtype=torch.float32)},
        config={"source": "torchvision", "name": "resnet18", "num_classes": 4},
        training_state={"epoch": 1},
        metrics={"val_loss": 0.5},
        keep_last=1,
    )
    return f"/v1/jobs/{job_id}/checkpoints/last/model.safetensors"


def test_a_range_of_5000_digits_is_clamped_not_a_500(
    http: httpx.Client, checkpoint_url: str
) -> None:
    whole = http.get(checkpoint_url).content
    size = len(whole)
    tail = http.get(checkpoint_url, headers={"Range": "bytes=0-" + "9" * 5000})
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    assert tail.content == whole
    suffix = http.get(checkpoint_url, headers={"Range": "bytes=-" + "9" * 5000})
    assert suffix.status_code == 206 and suffix.content == whole
    err = problem(http.get(checkpoint_url, headers={"Range": "bytes=" + "9" * 5000 + "-"}), 416)
    assert err["code"] == "range_not_satisfiable"
    assert err["detail"].endswith(f"is outside the file's {size} bytes")


def test_head_answers_wherever_get_does(http: httpx.Client, checkpoint_url: str) -> None:
    job_path = checkpoint_url.split("/checkpoints/")[0]
    for path in (
        checkpoint_url,
        job_path,
        f"{job_path}/events",
        "/v1/jobs",
        "/healthz",
        "/",
        "/static/thaw.js",
        "/openapi.json",
    ):
        got = http.get(path)
        head = http.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        if "content-length" in got.headers:
            assert head.headers["content-length"] == got.headers["content-length"], path
    head = http.head(checkpoint_url)
    assert head.headers["etag"] == http.get(checkpoint_url).headers["etag"]
    partial = http.head(checkpoint_url, headers={"Range": "bytes=0-9"})
    assert partial.status_code == 206 and partial.headers["content-length"] == "10"
    missing = http.head(f"{job_path}x")
    assert missing.status_code == 404


def _errors(response: httpx.Response) -> dict[str, dict]:
    return {e["loc"]: e for e in problem(response, 422)["errors"]}


def test_a_misspelt_field_gets_the_closest_valid_field_at_its_level(http: httpx.Client) -> None:
    body = job_body(shedule=[{"at_epoch": 2, "unfreeze": ["layer3"]}])
    body["hyperparameters"] = {"epoch": 3}
    body["schedule"] = [{"preset": "gradual", "every_epoch": 2}]
    for path in ("/v1/plans", "/v1/jobs"):
        errors = _errors(http.post(path, json=body))
        assert errors["shedule"] == {
            "loc": "shedule",
            "message": "is not a field here; did you mean 'schedule'?",
            "hint": "rename it to 'schedule'; an unknown field is never ignored",
            "closest": ["schedule"],
        }
        assert errors["hyperparameters.epoch"]["closest"] == ["epochs"]
        assert errors["schedule[0].every_epoch"]["closest"] == ["every_epochs"]
    assert http.get("/v1/jobs").json()["data"] == []
    unknown = _errors(http.post("/v1/plans", json=job_body(zzz=1)))["zzz"]
    assert unknown["closest"] == []
    assert unknown["hint"] == "remove this field; it is not part of the job spec"


@pytest.mark.parametrize(
    ("field", "value"),
    [("seed", "1"), ("seed", True), ("seed", False), ("epochs", "3"), ("batch_size", True)],
)
def test_coerced_numbers_are_refused(http: httpx.Client, field: str, value: object) -> None:
    body = job_body()
    body["hyperparameters"][field] = value
    error = _errors(http.post("/v1/plans", json=body))[f"hyperparameters.{field}"]
    assert error["message"] == "Input should be a valid integer"
    assert error["hint"] == "send a JSON integer such as 3, without quotes"


def test_json_nested_1000_deep_is_a_422_naming_the_body(http: httpx.Client) -> None:
    for doc in ("[" * 1000 + "]" * 1000, '{"metadata":' * 1000 + "{}" + "}" * 1000):
        response = http.post("/v1/plans", content=doc, headers={"Content-Type": "application/json"})
        err = problem(response, 422)
        assert err["errors"][0]["loc"] == "body"
        assert err["detail"].startswith("body: nests arrays or objects too deeply to parse")


@pytest.mark.parametrize("name", ["bad\x00name", "tab\tname", "del\x7f"])
def test_control_characters_are_refused_in_names(
    api: ApiServer, http: httpx.Client, name: str
) -> None:
    errors = _errors(http.post("/v1/jobs", json=job_body(name=name)))
    assert errors["name"]["message"] == (
        "must not contain control characters such as NUL; give a plain name"
    )
    dataset = job_body(dataset={"path": f"folder/{name}"})
    assert "dataset.path" in _errors(http.post("/v1/plans", json=dataset))
    upload = _raw_upload(http, filename=f"{name}.csv", title="ok")
    assert problem(upload, 422)["detail"] == (
        "the 'file' part's filename must not contain control characters such as NUL; "
        "give a plain name"
    )
    titled = _raw_upload(http, filename="d.csv", title=name)
    assert problem(titled, 422)["detail"].startswith("the 'name' field must not contain")
    assert http.get("/v1/jobs").json()["data"] == []
    assert http.get("/v1/datasets").json()["data"] == []


def _raw_upload(http: httpx.Client, *, filename: str, title: str) -> httpx.Response:
    """A multipart body written byte for byte (clients escape control characters)."""
    b = "rawboundary"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{title}\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"\r\ntext,label\r\na,b\r\nc,d\r\n--{b}--\r\n"
    ).encode()
    return http.post(
        "/v1/datasets",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={b}"},
    )
