"""Bearer API keys per tenant: 401 without a valid key, 404 across tenants."""

from __future__ import annotations

import re

import pytest
from api_fixtures import KEYS, ApiServer, job_body, problem

from service.auth.keys import ApiKeys
from service.launch.server import UnsafeBind, check_bind, is_loopback
from thaw.settings import Settings

pytestmark = pytest.mark.in_process


def test_missing_and_wrong_keys_are_401(keyed: ApiServer) -> None:
    with keyed.client() as anonymous:
        err = problem(anonymous.get("/v1/jobs"), 401)
        assert err["detail"] == "missing API key; send 'Authorization: Bearer <key>'"
        assert anonymous.get("/v1/jobs").headers["www-authenticate"] == 'Bearer realm="thaw"'
        problem(anonymous.post("/v1/jobs", json=job_body()), 401)
        problem(anonymous.get("/v1/models"), 401)
        assert anonymous.get("/healthz").status_code == 200
    with keyed.client("key-alice-0123456789x") as wrong:
        err = problem(wrong.get("/v1/jobs"), 401)
        assert err["detail"] == "invalid API key"
    with keyed.client(headers={"Authorization": f"Basic {KEYS['alice']}"}) as basic:
        problem(basic.get("/v1/datasets"), 401)


def test_other_tenants_get_404(keyed: ApiServer) -> None:
    with keyed.client(KEYS["alice"]) as alice, keyed.client(KEYS["bob"]) as bob:
        job = alice.post("/v1/jobs", json=job_body())
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        ds = alice.post(
            "/v1/datasets", files={"file": ("r.csv", b"text,label\na,x\nb,y\nc,x\nd,y\n")}
        )
        assert ds.status_code == 201, ds.text
        ds_id = ds.json()["id"]
        assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
        for path in (
            f"/v1/jobs/{job_id}",
            f"/v1/jobs/{job_id}/events",
            f"/v1/jobs/{job_id}/layers",
            f"/v1/jobs/{job_id}/checkpoints",
            f"/v1/datasets/{ds_id}",
        ):
            err = problem(bob.get(path), 404)
            assert job_id in err["detail"] or ds_id in err["detail"]
        problem(bob.post(f"/v1/jobs/{job_id}/cancel"), 404)
        problem(bob.delete(f"/v1/datasets/{ds_id}"), 404)
        assert bob.get("/v1/jobs").json() == {"data": [], "has_more": False}
        assert bob.get("/v1/datasets").json() == {"data": [], "has_more": False}
        err = problem(bob.post("/v1/jobs", json=job_body(dataset={"id": ds_id})), 422)
        assert err["errors"][0]["loc"] == "dataset.id"
        assert alice.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        assert alice.get(f"/v1/datasets/{ds_id}").status_code == 200

        base = {"source": "job", "name": job_id}
        for client, expected in ((bob, f"no job '{job_id}'"), (alice, f"job {job_id} is queued")):
            for path in ("/v1/jobs", "/v1/plans"):
                err = problem(client.post(path, json=job_body(base_model=base)), 422)
                assert err["errors"][0]["loc"] == "base_model.name"
                assert err["errors"][0]["message"].startswith(expected), err
        assert bob.get("/v1/jobs").json() == {"data": [], "has_more": False}


def test_same_idempotency_key_is_per_tenant(keyed: ApiServer) -> None:
    headers = {"Idempotency-Key": "shared"}
    with keyed.client(KEYS["alice"]) as alice, keyed.client(KEYS["bob"]) as bob:
        a = alice.post("/v1/jobs", json=job_body(), headers=headers)
        b = bob.post("/v1/jobs", json=job_body(name="bob"), headers=headers)
        assert (a.status_code, b.status_code) == (202, 202)
        assert a.json()["id"] != b.json()["id"]


def test_api_keys_parse() -> None:
    keys = ApiKeys.parse(" a:k1 , b:k2,")
    assert [keys.caller_for(k).tenant for k in ("k1", "k2")] == ["a", "b"]
    assert keys.caller_for("k3") is None
    assert not ApiKeys.parse("").enabled
    with pytest.raises(ValueError, match="tenant:key pairs"):
        ApiKeys.parse("nokey")


def test_non_loopback_bind_needs_keys() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(
        UnsafeBind, match=re.escape("refusing to listen on '0.0.0.0' without API keys")
    ):
        check_bind("0.0.0.0", Settings(api_keys=""))
    check_bind("0.0.0.0", Settings(api_keys="t:k"))
    check_bind("127.0.0.1", Settings(api_keys=""))


def test_bearer_scheme_is_case_insensitive(keyed: ApiServer) -> None:
    with keyed.client(headers={"Authorization": f"bearer {KEYS['bob']}"}) as c:
        assert c.get("/v1/jobs").status_code == 200
