"""Pages, static files, the API and its problems carry a Content-Security-Policy that runs
no inline script, nosniff, no framing and no referrer (the pages working under it is
tested in Chromium by every test_ui_* test)."""

from __future__ import annotations

import httpx
import pytest
from api_fixtures import problem

pytestmark = pytest.mark.in_process

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    pairs = (part.strip().partition(" ") for part in policy.split(";") if part.strip())
    return {name: value for name, _, value in pairs}


def test_every_kind_of_response_carries_the_headers(http: httpx.Client) -> None:
    for path in ("/", "/ui/plan", "/static/thaw.js", "/v1/jobs", "/docs", "/healthz"):
        response = http.get(path)
        assert response.status_code == 200, path
        for name, value in COMMON.items():
            assert response.headers[name] == value, (path, name)
        assert _directives(response)["frame-ancestors"] == "'none'", path
    refused = http.get("/v1/jobs/job_x")
    problem(refused, 404)
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert _directives(refused)["default-src"] == "'none'"


def test_pages_run_only_the_apps_own_scripts(http: httpx.Client) -> None:
    for path in ("/", "/ui/plan", "/ui/jobs/job_0123456789abcdef01234567"):
        policy = _directives(http.get(path))
        assert policy["script-src"] == "'self'", path
        assert policy["style-src"] == "'self'", path
        assert policy["object-src"] == "'none'", path
    for path in ("/docs", "/redoc"):
        script = _directives(http.get(path))["script-src"].split()
        assert script[0] == "'self'", path
        assert all(source.startswith("'sha256-") for source in script[1:]), path
    assert _directives(http.get("/v1/jobs"))["default-src"] == "'none'"
