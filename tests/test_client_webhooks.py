"""``thaw webhooks add|list|rm|deliveries`` and ``thaw metrics`` against a real uvicorn."""

from __future__ import annotations

import json

from api_fixtures import ApiServer, job_body
from support import run_cli

PUBLIC_URL = "https://93.184.215.14/hooks"  # an address literal: nothing to look up


def test_add_list_deliveries_and_rm(api: ApiServer, capsys) -> None:
    url = ("--api-url", api.url)
    code, out, err = run_cli(capsys, "webhooks", "add", PUBLIC_URL, "--events",
                          "job.succeeded,job.failed", *url)  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["job.succeeded", "job.failed"]
    assert "not shown again" in err

    code, out, _ = run_cli(capsys, "webhooks", "list", *url)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "URL", "EVENTS", "CREATED"]
    assert row.split()[:3] == [created["id"], PUBLIC_URL, "job.succeeded,job.failed"]
    assert created["secret"] not in out

    code, out, _ = run_cli(capsys, "webhooks", "deliveries", created["id"], *url)
    assert code == 0
    assert out.split() == ["CREATED", "TYPE", "JOB", "STATUS", "TRIES", "ANSWER", "ERROR"]

    assert run_cli(capsys, "webhooks", "rm", created["id"], *url)[:2] == (
        0,
        f"{created['id']} deleted\n",
    )
    code, _, err = run_cli(capsys, "webhooks", "rm", created["id"], *url)
    assert code == 1 and err == f"Not Found: no webhook '{created['id']}'\n"


def test_a_loopback_url_is_refused_with_the_reason(api: ApiServer, capsys) -> None:
    code, out, err = run_cli(
        capsys, "webhooks", "add", "http://127.0.0.1:8080/", "--api-url", api.url
    )
    assert code == 1 and out == ""
    assert err.startswith("Invalid request: url: the host '127.0.0.1' resolves to 127.0.0.1")
    with api.client() as http:
        assert http.get("/v1/webhooks").json()["data"] == []


def test_metrics_of_a_job_without_steps_is_a_header(api: ApiServer, tmp_path, capsys) -> None:
    with api.client() as http:
        job = http.post("/v1/jobs", json=job_body()).json()
    out_file = tmp_path / "m.csv"
    code, out, _ = run_cli(capsys, "metrics", job["id"], "-o", str(out_file), "--api-url", api.url)
    assert code == 0 and out.startswith(str(out_file))
    assert out_file.read_text().splitlines() == [
        "kind,time,step,epoch,phase,loss,trainable_params,total_params,thawed_count,frozen_count"
    ]
    code, _, err = run_cli(capsys, "metrics", "job_0123456789abcdef01234567", "--api-url", api.url)
    assert code == 1 and err.startswith("Not Found: no job ")
