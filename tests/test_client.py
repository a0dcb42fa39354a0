"""The ``thaw`` client commands against a real uvicorn and Redis (no worker): problems print
as ``title: detail`` with exit 1, keys come from the flag or THAW_API_KEY, jobs list, get,
cancel, planned layers, dataset upload; and the SSE parser."""

from __future__ import annotations

import json
from pathlib import Path

from api_fixtures import KEYS, ApiServer, job_body
from digits import write_digits_folder, zip_folder
from support import run_cli

from thaw.client.sse import SseEvent, parse_sse


def _spec_file(tmp_path: Path, body: dict) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_a_bad_spec_prints_the_problem_title_and_detail_and_exits_1(
    api: ApiServer, tmp_path, capsys
) -> None:
    body = job_body()
    body["freeze"]["rules"][0]["match"] = "layer9"
    with api.client() as http:
        expected = http.post("/v1/jobs", json=body).json()
        assert http.get("/v1/jobs").json()["data"] == []
    code, out, err = run_cli(capsys, "submit", _spec_file(tmp_path, body), "--api-url", api.url)
    assert code == 1
    assert out == ""
    assert err == f"{expected['title']}: {expected['detail']}\n"
    assert err.startswith("Invalid request: freeze.rules[0].match: ")
    with api.client() as http:
        assert http.get("/v1/jobs").json()["data"] == []


def test_unreadable_spec_and_unreachable_api_exit_1(api: ApiServer, tmp_path, capsys) -> None:
    (tmp_path / "broken.json").write_text("{")
    code, _, err = run_cli(capsys, "submit", str(tmp_path / "broken.json"), "--api-url", api.url)
    assert code == 1 and err.startswith(f"{tmp_path / 'broken.json'} is not JSON: ")
    code, _, err = run_cli(capsys, "jobs", "list", "--api-url", "http://127.0.0.1:9")
    assert code == 1 and err.startswith("cannot reach the API at http://127.0.0.1:9: ")


def test_submit_list_get_cancel_and_planned_layers(api: ApiServer, tmp_path, capsys) -> None:
    code, out, _ = run_cli(
        capsys, "submit", _spec_file(tmp_path, job_body(name="cli-job")), "--api-url", api.url
    )
    assert code == 0
    job_id = out.strip()
    with api.client() as http:
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"

    code, out, _ = run_cli(capsys, "jobs", "list", "--api-url", api.url)
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "PROGRESS", "METRICS", "CREATED"]
    assert row.split()[:5] == [job_id, "cli-job", "queued", "0%", "-"]

    code, out, _ = run_cli(capsys, "jobs", "get", job_id, "--api-url", api.url)
    assert code == 0 and json.loads(out)["spec"]["name"] == "cli-job"

    code, out, _ = run_cli(capsys, "layers", job_id, "--api-url", api.url)
    lines = out.splitlines()
    assert lines[0].split() == ["GROUP", "1*", "2*", "3*"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert rows == {
        "stem": [".", ".", "."],
        "layer1": [".", ".", "."],
        "layer2": [".", ".", "."],
        "layer3": [".", "#", "#"],
        "layer4": ["#", "#", "#"],
        "fc": ["#", "#", "#"],
    }
    assert lines[-1] == "# trainable  + partly  . frozen  * planned, not yet recorded"

    code, out, _ = run_cli(capsys, "layers", job_id, "--epoch", "2", "--api-url", api.url)
    assert out.startswith("epoch 2 (planned), phase 1: ")
    row = next(line.split() for line in out.splitlines() if line.startswith("layer3.0.conv1 "))
    assert row[:4] == ["layer3.0.conv1", "Conv2d", "3", "trainable"]
    assert row[5] == "0.0001"

    code, out, err = run_cli(capsys, "layers", job_id, "--epoch", "9", "--api-url", api.url)
    assert code == 1
    assert err == ("Not Found: epoch 9 is not an epoch of this job; give ?epoch= between 1 and 3\n")

    code, out, _ = run_cli(capsys, "jobs", "cancel", job_id, "--api-url", api.url)
    assert (code, out) == (0, f"{job_id} cancelled\n")
    code, out, _ = run_cli(capsys, "logs", job_id, "--api-url", api.url)
    statuses = [json.loads(line.split(maxsplit=3)[3])["status"] for line in out.splitlines()]
    assert statuses == ["queued", "cancelled"]


def test_keys_from_the_flag_or_the_environment(
    keyed: ApiServer, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("THAW_API_KEY", raising=False)
    code, _, err = run_cli(capsys, "jobs", "list", "--api-url", keyed.url)
    assert code == 1
    assert err == "Unauthorized: missing API key; send 'Authorization: Bearer <key>'\n"

    spec = _spec_file(tmp_path, job_body(name="alice-cli"))
    code, out, _ = run_cli(
        capsys, "submit", spec, "--api-url", keyed.url, "--api-key", KEYS["alice"]
    )
    assert code == 0
    job_id = out.strip()

    monkeypatch.setenv("THAW_API_URL", keyed.url)
    monkeypatch.setenv("THAW_API_KEY", KEYS["bob"])
    code, _, err = run_cli(capsys, "jobs", "get", job_id)
    assert code == 1 and err == f"Not Found: no job '{job_id}'\n"
    monkeypatch.setenv("THAW_API_KEY", KEYS["alice"])
    code, out, _ = run_cli(capsys, "jobs", "get", job_id)
    assert code == 0 and json.loads(out)["name"] == "alice-cli"


def test_datasets_upload(api: ApiServer, tmp_path, capsys) -> None:
    folder = write_digits_folder(tmp_path / "digits", per_class=3, size=8)
    archive = zip_folder(folder, tmp_path / "digits.zip")
    code, out, _ = run_cli(
        capsys, "datasets", "upload", str(archive), "--name", "tiny", "--api-url", api.url
    )
    assert code == 0
    dataset = json.loads(out)
    assert (dataset["name"], dataset["num_examples"]) == ("tiny", 30)
    with api.client() as http:
        assert http.get(f"/v1/datasets/{dataset['id']}").json()["sha256"] == dataset["sha256"]

    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with api.client() as http, notes.open("rb") as fh:
        expected = http.post("/v1/datasets", files={"file": ("notes.txt", fh)}).json()
    code, _, err = run_cli(capsys, "datasets", "upload", str(notes), "--api-url", api.url)
    assert code == 1
    assert err == f"{expected['title']}: {expected['detail']}\n"
    assert ".zip" in expected["detail"]


def test_sse_frames_parse_across_comments_and_multiline_data() -> None:
    lines = [
        "retry: 2000",
        "",
        ": keepalive",
        "",
        "id: 1-0",
        "event: status",
        'data: {"a":',
        "data: 1}",
        "",
        "id: 2-0",
        "event: log",
        'data: {"b": 2}',
    ]
    assert list(parse_sse(lines)) == [
        SseEvent("1-0", "status", {"a": 1}),
        SseEvent("2-0", "log", {"b": 2}),
    ]
