"""The webhook routes over HTTP: the secret shown once, tenants apart, bad URLs refused."""

from __future__ import annotations

import pytest
from api_fixtures import KEYS, problem

pytestmark = pytest.mark.in_process


def test_a_loopback_url_is_refused_without_the_setting_and_nothing_is_stored(http):
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/", "http://[::1]:8080/"):
        body = problem(http.post("/v1/webhooks", json={"url": url}), 422)
        assert body["code"] == "webhook_url_refused"
        assert body["errors"][0]["loc"] == "url"
        assert "THAW_WEBHOOKS_ALLOW_PRIVATE" in body["detail"]
    assert http.get("/v1/webhooks").json() == {"data": [], "has_more": False}


def test_unknown_event_types_and_fields_are_refused(http):
    body = problem(
        http.post(
            "/v1/webhooks", json={"url": "https://example.com/h", "events": ["job.exploded"]}
        ),
        422,
    )
    assert body["errors"][0]["loc"] == "events[0]"
    problem(http.post("/v1/webhooks", json={"url": "https://example.com/h", "secret": "x"}), 422)
    assert http.get("/v1/webhooks").json()["data"] == []


def test_the_secret_is_shown_once_and_webhooks_belong_to_their_tenant(keyed):
    with keyed.client(KEYS["alice"]) as alice, keyed.client(KEYS["bob"]) as bob:
        # a public address literal: resolving it needs no DNS
        created = alice.post(
            "/v1/webhooks", json={"url": "https://93.184.215.14/hooks", "events": ["job.failed"]}
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_")
        assert created.headers["location"] == f"/v1/webhooks/{hook['id']}"
        assert hook["events"] == ["job.failed"]

        read = alice.get(f"/v1/webhooks/{hook['id']}").json()
        assert "secret" not in read
        assert [h["id"] for h in alice.get("/v1/webhooks").json()["data"]] == [hook["id"]]
        assert alice.get(f"/v1/webhooks/{hook['id']}/deliveries").json() == {
            "data": [],
            "has_more": False,
        }

        assert bob.get("/v1/webhooks").json()["data"] == []
        assert problem(bob.get(f"/v1/webhooks/{hook['id']}"), 404)["code"] == "webhook_not_found"
        problem(bob.delete(f"/v1/webhooks/{hook['id']}"), 404)
        problem(bob.get(f"/v1/webhooks/{hook['id']}/deliveries"), 404)

        assert alice.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        problem(alice.get(f"/v1/webhooks/{hook['id']}"), 404)
        problem(alice.get("/v1/webhooks/wh_../deliveries"), 404)
