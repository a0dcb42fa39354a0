"""The pages and the API docs in headless Chromium against a real uvicorn and Redis:
/docs and /redoc load only from the app, the plan page shows a 422's field path or the
plan's map, the jobs list updates live, and with API keys the page asks for one."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from api_fixtures import KEYS, ApiServer, job_body
from support import row_states

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _remote_requests(page: Any, server: ApiServer) -> list[str]:
    """Every http(s) request of the page that leaves the app's origin and is not blocked by
    the page's Content-Security-Policy (ReDoc links a vendor logo from a CDN)."""
    seen: list[str] = []
    origin = urlsplit(server.url).netloc

    def remote(request: Any) -> bool:
        parts = urlsplit(request.url)
        return parts.scheme in ("http", "https") and parts.netloc != origin

    def record(request: Any) -> None:
        if remote(request):
            seen.append(request.url)

    def blocked(request: Any) -> None:
        if remote(request) and request.failure == "csp":
            seen.remove(request.url)

    page.on("request", record)
    page.on("requestfailed", blocked)
    return seen


def test_swagger_ui_shows_every_operation_from_local_assets(page, api: ApiServer) -> None:
    remote = _remote_requests(page, api)
    with api.client() as http:
        paths = http.get("/openapi.json").json()["paths"]
    expected = sorted(
        (method.upper(), path)
        for path, ops in paths.items()
        for method in ops
        if method in HTTP_METHODS
    )
    page.goto(f"{api.url}/docs")
    page.wait_for_selector(".opblock-summary")
    blocks = page.locator(".opblock-summary")
    shown = sorted(
        (
            blocks.nth(i).locator(".opblock-summary-method").inner_text().strip(),
            blocks.nth(i).locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for i in range(blocks.count())
    )
    assert shown == expected
    page.wait_for_load_state("networkidle")
    assert remote == []


def test_redoc_renders_the_operations_from_local_assets(page, api: ApiServer) -> None:
    remote = _remote_requests(page, api)
    page.goto(f"{api.url}/redoc")
    page.get_by_role("heading", name="Submit a job").first.wait_for()
    assert page.locator("h2", has_text="Plan a job spec").count() >= 1
    page.wait_for_load_state("networkidle")
    assert remote == []


def _bad_spec() -> dict[str, Any]:
    body = job_body()
    body["freeze"]["rules"][0]["match"] = "layer9"
    return body


def test_plan_page_shows_the_field_path_of_a_422(page, api: ApiServer) -> None:
    with api.client() as http:
        answer = http.post("/v1/plans", json=_bad_spec())
    assert answer.status_code == 422
    expected = answer.json()["errors"][0]
    assert expected["loc"] == "freeze.rules[0].match"

    page.goto(f"{api.url}/ui/plan")
    page.fill("#spec", _as_json(_bad_spec()))
    page.click("#plan")
    error = page.locator(".field-error").first
    error.wait_for()
    assert error.locator(".loc").inner_text() == "freeze.rules[0].match"
    assert error.locator(".message").inner_text() == expected["message"]
    assert page.locator(".problem-title").inner_text() == (
        f"{answer.json()['title']}: {answer.json()['detail']}"
    )
    assert page.locator("#layer-map tr").count() == 0


def test_plan_page_maps_the_plan_then_submits_it(page, api: ApiServer) -> None:
    spec = job_body(name="planned-on-the-page")
    spec["hyperparameters"]["epochs"] = 4
    spec["schedule"] = [{"at_epoch": 3, "unfreeze": ["layer3"], "lr": 1e-4}]
    with api.client() as http:
        plan = http.post("/v1/plans", json=spec).json()

    page.goto(f"{api.url}/ui/plan")
    page.fill("#spec", _as_json(spec))
    page.click("#plan")
    page.locator("tr.group-row").first.wait_for()
    assert _map_names(page) == [g["name"] for g in plan["groups"]]
    assert page.locator("th.epoch").all_inner_texts() == ["1", "2", "3", "4"]
    assert row_states(page, "layer3") == ["frozen", "frozen", "trainable", "trainable"]
    assert row_states(page, "layer4") == ["trainable"] * 4
    assert row_states(page, "stem") == ["frozen"] * 4
    assert set(page.locator("td.cell").evaluate_all("cs => cs.map(c => c.dataset.source)")) == {
        "planned"
    }
    lr_cell = page.locator('tr.group-row[data-name="layer3"] td.cell').nth(2)
    assert lr_cell.get_attribute("data-lr") == "0.0001"
    assert "lr 0.0001" in lr_cell.get_attribute("title")

    page.click('tr.group-row[data-name="layer3"] button.expand')
    layer3 = next(g for g in plan["groups"] if g["name"] == "layer3")
    first = plan["epochs"][0]["layers"]
    expected_layers = [r["name"] for r in first if r["group"] == layer3["index"]]
    assert (
        page.locator("tr.layer-row").evaluate_all("rows => rows.map(r => r.dataset.name)")
        == expected_layers
    )

    page.click("#submit")
    page.wait_for_url(re.compile(r".*/ui/jobs/job_\w+$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.locator("#job-status.status-queued").wait_for()
    assert page.locator("#job-name").inner_text() == "planned-on-the-page"
    with api.client() as http:
        assert http.get(f"/v1/jobs/{job_id}").json()["spec"]["hyperparameters"]["epochs"] == 4
    page.locator("tr.group-row").first.wait_for()
    assert row_states(page, "layer3") == ["frozen", "frozen", "trainable", "trainable"]


def test_jobs_list_shows_the_tenants_jobs_and_updates_live(page, api: ApiServer) -> None:
    with api.client() as http:
        first = http.post("/v1/jobs", json=job_body(name="first")).json()
        second = http.post("/v1/jobs", json=job_body(name="second")).json()
    page.goto(api.url + "/")
    page.locator(f'tr[data-job-id="{first["id"]}"]').wait_for()
    rows = page.locator("#jobs tbody tr")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)") == [second["id"], first["id"]]
    assert rows.first.locator(".status").inner_text() == "queued"
    assert rows.first.locator("a").inner_text() == "second"

    with api.client() as http:
        assert http.post(f"/v1/jobs/{first['id']}/cancel").json()["status"] == "cancelled"
    page.locator(f'tr[data-job-id="{first["id"]}"][data-status="cancelled"]').wait_for()


def test_with_api_keys_the_page_asks_for_a_key_and_shows_only_that_tenants_jobs(
    page, keyed: ApiServer
) -> None:
    with keyed.client(KEYS["alice"]) as alice, keyed.client(KEYS["bob"]) as bob:
        mine = alice.post("/v1/jobs", json=job_body(name="alice-job")).json()
        theirs = bob.post("/v1/jobs", json=job_body(name="bob-job")).json()
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("authorization")) if "/v1/" in r.url else None,
    )

    page.goto(keyed.url + "/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for()
    assert "needs an API key" in dialog.locator(".key-message").inner_text()
    page.fill("#api-key", "not-a-key")
    page.click("#key-submit")
    page.locator("#key-dialog .key-message", has_text="That key was refused").wait_for()
    page.fill("#api-key", KEYS["alice"])
    page.click("#key-submit")

    page.locator(f'tr[data-job-id="{mine["id"]}"]').wait_for()
    assert page.locator("#jobs tbody tr").count() == 1
    assert page.locator(f'tr[data-job-id="{theirs["id"]}"]').count() == 0
    assert f"Bearer {KEYS['alice']}" in sent
    storage = page.evaluate("() => [{...sessionStorage}, {...localStorage}, document.cookie]")
    assert storage == [{"thaw.apiKey": KEYS["alice"]}, {}, ""]

    page.goto(f"{keyed.url}/ui/jobs/{theirs['id']}")
    page.locator(".problem-title", has_text="Not Found").wait_for()
    assert page.locator("#job-name").inner_text() == "…"


def _as_json(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2)


def _map_names(page: Any) -> list[str]:
    return page.locator("tr.group-row").evaluate_all("rows => rows.map(r => r.dataset.name)")
