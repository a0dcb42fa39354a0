"""Issue 8 against a live API: hostile or malformed requests get a 4xx naming the field, and
never stall the service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from api_fixtures import ApiServer, job_body, problem

pytest_plugins = ("api_fixtures",)


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
