"""Checkpoint listing and downloads: ETag, If-None-Match, Range, and path tricks."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import torch
from api_fixtures import ApiServer, job_body, problem

from thaw.checkpoints import save_checkpoint

pytestmark = pytest.mark.in_process


@pytest.fixture
def job_with_checkpoints(api: ApiServer, http: httpx.Client) -> str:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    run = api.jobs_dir / job_id
    for epoch, loss in ((1, 0.9), (2, 0.5), (3, 0.7)):
        save_checkpoint(
            run,
            epoch=epoch,
            step=epoch * 4,
            model_state={"w": torch.full((64, 64), float(epoch))},
            config={"source": "torchvision", "name": "resnet18", "num_classes": 4},
            training_state={"epoch": epoch},
            metrics={"val_loss": loss},
            keep_last=2,
        )
    (run / "secret.txt").write_text("not a checkpoint file")
    return job_id


def test_list_newest_first_with_best_and_last(
    http: httpx.Client, job_with_checkpoints: str
) -> None:
    body = http.get(f"/v1/jobs/{job_with_checkpoints}/checkpoints").json()
    assert body["has_more"] is False
    names = [(c["name"], c["best"], c["last"]) for c in body["data"]]
    assert names == [("epoch-3", False, True), ("epoch-2", True, False)]
    files = {f["name"] for f in body["data"][0]["files"]}
    assert files == {"model.safetensors", "config.json", "training_state.safetensors"}
    assert body["data"][1]["metrics"] == {"val_loss": 0.5}
    assert "path" not in body["data"][0]


def test_job_without_checkpoints_lists_nothing(http: httpx.Client) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    assert http.get(f"/v1/jobs/{job_id}/checkpoints").json() == {"data": [], "has_more": False}
    err = problem(http.get(f"/v1/jobs/{job_id}/checkpoints/best/model.safetensors"), 404)
    assert err["detail"] == "no 'best' checkpoint: nothing was saved yet"


def test_download_with_etag_and_conditional(
    api: ApiServer, http: httpx.Client, job_with_checkpoints: str
) -> None:
    url = f"/v1/jobs/{job_with_checkpoints}/checkpoints/best/model.safetensors"
    response = http.get(url)
    assert response.status_code == 200
    on_disk = api.jobs_dir / job_with_checkpoints / "checkpoints/epoch-2/model.safetensors"
    content = on_disk.read_bytes()
    assert response.content == content
    assert response.headers["content-length"] == str(len(content))
    etag = f'"{hashlib.sha256(content).hexdigest()}"'
    assert response.headers["etag"] == etag
    assert response.headers["accept-ranges"] == "bytes"
    not_modified = http.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    changed = http.get(url, headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200
    by_name = http.get(f"/v1/jobs/{job_with_checkpoints}/checkpoints/epoch-3/config.json")
    assert by_name.json()["num_classes"] == 4


def test_single_range_and_unsatisfiable(
    api: ApiServer, http: httpx.Client, job_with_checkpoints: str
) -> None:
    url = f"/v1/jobs/{job_with_checkpoints}/checkpoints/last/model.safetensors"
    content = api.jobs_dir / job_with_checkpoints / "checkpoints/epoch-3/model.safetensors"
    data = content.read_bytes()
    part = http.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert part.headers["content-length"] == "10"
    tail = http.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206
    assert tail.content == data[-5:]
    open_end = http.get(url, headers={"Range": f"bytes={len(data) - 3}-"})
    assert open_end.content == data[-3:]
    err = problem(http.get(url, headers={"Range": f"bytes={len(data)}-"}), 416)
    assert err["code"] == "range_not_satisfiable"
    assert (
        err["detail"] == f"the range 'bytes={len(data)}-' is outside the file's {len(data)} bytes"
    )
    stale = http.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert stale.status_code == 200
    assert stale.content == data


@pytest.mark.parametrize(
    ("name", "file", "status"),
    [
        ("..", "secret.txt", 404),
        ("epoch-3", "..%2F..%2Fsecret.txt", 404),
        ("epoch-3", "%2E%2E", 400),
        ("epoch-03", "model.safetensors", 400),
        ("epoch-1", "model.safetensors", 404),
        ("best", "meta.json", 404),
        ("best", ".hidden", 400),
        ("latest", "config.json", 400),
    ],
)
def test_path_tricks_never_serve_other_files(
    http: httpx.Client, job_with_checkpoints: str, name: str, file: str, status: int
) -> None:

    response = http.get(f"/v1/jobs/{job_with_checkpoints}/checkpoints/{name}/{file}")
    problem(response, status)
    assert b"not a checkpoint file" not in response.content


def test_invalid_name_problem_names_the_fix(http: httpx.Client, job_with_checkpoints: str) -> None:
    err = problem(
        http.get(f"/v1/jobs/{job_with_checkpoints}/checkpoints/epoch-03/model.safetensors"), 400
    )
    assert err["code"] == "invalid_checkpoint_name"
    assert err["detail"] == (
        "invalid checkpoint name 'epoch-03' (use 'best', 'last' or 'epoch-<k>' such as 'epoch-3')"
    )
