"""A real digits job watched in headless Chromium from the moment it is submitted: the
jobs list shows it, the job page's curves fill from the event stream, and the layers x
epochs map shows layer3 turning trainable at its thaw epoch, as the worker recorded it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support import row_states
from worker_fixtures import digits_spec

if TYPE_CHECKING:
    from live_stack import Live

pytestmark = pytest.mark.slow


def test_a_digits_job_on_the_jobs_list_and_the_job_page(page, live: Live, artifacts) -> None:
    with live.api.client() as http:
        created = http.post("/v1/jobs", json=digits_spec(epochs=3))
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]

        page.goto(live.url + "/")
        row = page.locator(f'tr[data-job-id="{job_id}"]')
        row.wait_for()
        assert row.locator("a").inner_text() == "digits-resnet18"

        row.locator("a").click()
        page.wait_for_url(f"**/ui/jobs/{job_id}")
        page.locator("body[data-stream=ended]").wait_for(timeout=240_000)
        job = http.get(f"/v1/jobs/{job_id}").json()
        layers = http.get(f"/v1/jobs/{job_id}/layers").json()
        checkpoints = http.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"]

    assert job["status"] == "succeeded", job
    assert page.locator("#job-status").inner_text() == "succeeded"
    assert page.locator("#progress-bar").evaluate("b => b.style.width") == "100%"

    train_points = page.locator("#loss-chart .train-loss circle.pt").count()
    assert train_points > 0
    assert page.locator("#loss-chart .val-loss circle.pt").count() == 3
    assert page.locator("#accuracy-chart .val-accuracy circle.pt").count() == 3
    markers = page.locator("#loss-chart .thaw-marker text").all_text_contents()
    assert markers == ["thaw layer3"]

    groups = [g["name"] for g in layers["groups"]]
    assert groups == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    rows = page.locator("tr.group-row")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.name)") == groups
    assert page.locator("th.epoch").all_inner_texts() == ["1", "2", "3"]
    states = {name: row_states(page, name) for name in groups}
    assert states["layer3"] == ["frozen", "trainable", "trainable"]
    assert states["layer4"] == states["fc"] == ["trainable"] * 3
    assert states["stem"] == states["layer1"] == states["layer2"] == ["frozen"] * 3
    sources = page.locator("td.cell").evaluate_all("cs => cs.map(c => c.dataset.source)")
    assert set(sources) == {"recorded"}
    assert [e["source"] for e in layers["epochs"]] == ["recorded"] * 3

    phases = page.locator("#phases li").all_inner_texts()
    assert len(phases) == 2
    assert "epochs 2\u20133 · trains layer3, layer4, fc" in phases[1]

    shown = page.locator("#checkpoints tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.checkpoint)"
    )
    assert shown == [c["name"] for c in checkpoints]
    sha = page.locator("#checkpoints code.sha256").first.inner_text()
    assert sha == checkpoints[0]["files"][0]["sha256"]

    csv_link = page.locator("#metrics-csv")
    assert csv_link.get_attribute("href") == f"/v1/jobs/{job_id}/metrics?format=csv"
    assert csv_link.get_attribute("download") == f"{job_id}-metrics.csv"

    page.screenshot(path=str(artifacts / "job-page.png"), full_page=True)
    page.goto(live.url + "/")
    page.locator(f'tr[data-job-id="{job_id}"][data-status="succeeded"]').wait_for()


def test_the_job_page_says_when_a_plateau_thawed_and_why_the_run_stopped(page, live: Live) -> None:
    spec = digits_spec(epochs=6, lr=1e-9, optimizer="sgd", momentum=0.0)
    spec["freeze"]["batchnorm"] = "frozen"  # with BatchNorm fixed the metric stays flat
    spec["schedule"] = [{"on_plateau": {"patience": 1}, "unfreeze": ["layer3"]}]
    spec["checkpointing"] = {
        "monitor": "val_accuracy",
        "early_stopping": {"patience": 2, "warmup_epochs": 0},
    }
    with live.api.client() as http:
        created = http.post("/v1/jobs", json=spec)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        page.goto(f"{live.url}/ui/jobs/{job_id}")
        page.locator("body[data-stream=ended]").wait_for(timeout=240_000)
        job = http.get(f"/v1/jobs/{job_id}").json()

    # Epoch 2 is the plateau (patience 1), so layer3 thaws with epoch 3; the thaw restarts
    # the patience, and epochs 3 and 4 without gain stop the run after epoch 4.
    assert job["status"] == "succeeded", job
    assert job["stopped_early"]["epoch"] == 4
    plateau = page.locator("#steering li.plateau")
    assert plateau.evaluate_all("ls => ls.map(l => l.dataset.epoch)") == ["3"]
    assert "phase 1 began with epoch 3" in plateau.inner_text()
    stopped = page.locator("#steering li.stopped-early")
    assert stopped.inner_text() == f"Stopped early after epoch 4: {job['stopped_early']['reason']}"
    assert "val_accuracy did not improve" in stopped.inner_text()
    markers = page.locator("#loss-chart .thaw-marker text").all_text_contents()
    assert markers == ["thaw layer3 (plateau)"]
    assert page.locator("th.epoch").all_inner_texts()[:4] == ["1", "2", "3", "4"]
    # BatchNorm stays frozen, so layer3 trains all but its norms from epoch 3.
    assert row_states(page, "layer3")[:4] == ["frozen", "frozen", "partial", "partial"]
    assert "plateau" in page.locator('#phases li[data-phase="1"]').inner_text()
