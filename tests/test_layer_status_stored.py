"""The per-layer status is stored per state, not per epoch, and reads back as before."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis
from api_fixtures import ApiServer, job_body
from support import engine_for, make_spec, settings

from thaw.freezing.layer_rows import PLAN_KEY, epoch_entry, layer_status, live_view
from thaw.freezing.stored_rows import compact_plan
from thaw.store import JobStore
from thaw.store.keys import Keys
from thaw.submit import plan_spec
from worker.lease import LeaseKeeper
from worker.store_link import StoreLink
from worker.store_reporter import StoreReporter

pytestmark = pytest.mark.in_process

GRADUAL = [{"preset": "gradual"}]


def _every_reading(stored: dict[str, Any], epochs: int) -> list[Any]:
    """The full listing and each epoch, with and without parameters."""
    readings: list[Any] = []
    for detail in (False, True):
        readings.append(layer_status(stored, detail=detail))
        readings += [layer_status(stored, epoch=n, detail=detail) for n in range(1, epochs + 1)]
    return readings


def test_compact_plan_reads_as_the_full_table() -> None:
    spec = make_spec(schedule=GRADUAL, hyperparameters={"epochs": 9, "batch_size": 4})
    table = plan_spec(spec, settings(), detail=True)
    compact = compact_plan(table)
    assert "epochs" not in compact
    assert len(compact["entries"]) == len(table["phases"]) == 6
    assert compact["runs"][-1] == [6, 9, 5]
    assert _every_reading({PLAN_KEY: compact}, 9) == _every_reading({PLAN_KEY: table}, 9)


def test_recorded_epochs_share_their_rows_and_read_as_full_entries(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    job, _ = store.create("acme", {"hyperparameters": {}})
    claimed = store.claim(job.id, "w1", 30.0)
    assert claimed is not None
    link = StoreLink(outage_s=5.0, outbox_max=1000)
    lease = LeaseKeeper(store, job.id, "w1", claimed.token, 30.0, 10.0, link)
    reporter = StoreReporter(store, lease, link)
    engine = engine_for(make_spec())
    full: dict[str, Any] = {}
    epochs = 60
    for epoch in range(1, epochs + 1):
        entry = epoch_entry(engine.index, live_view(engine, {}), epoch=epoch, phase=0, detail=True)
        changed = {"fc"} if epoch % 2 else {"fc", "layer4.1.conv2"}
        if epoch < epochs:
            for row in entry["layers"]:
                row["changed"] = row["name"] in changed
        reporter.layers(epoch, entry)
        full[f"epoch:{epoch}"] = entry
    assert link.flush()

    key = Keys().job_layers(job.id)
    fields = redis_client.hkeys(key)
    assert len(fields) == epochs + 4  # one rows blob, one dropout list, two sets of changed names
    record = redis_client.hget(key, "epoch:1")
    assert record is not None and len(record) < 250
    stored = store.load_layer_status(job.id)
    assert _every_reading(stored, epochs) == _every_reading(full, epochs)
    one = layer_status(stored, epoch=2)
    assert [r["name"] for r in one["layers"] if r["changed"]] == ["layer4.1.conv2", "fc"]
    assert "changed" not in layer_status(stored, epoch=epochs)["layers"][0]


def _submit(server: ApiServer, client: redis.Redis, epochs: int) -> tuple[str, int]:
    """A gradual alexnet job (8 layers, 6 groups): its id and the bytes of its stored plan."""
    body = job_body(
        base_model={"source": "torchvision", "name": "alexnet", "weights": None},
        freeze={"default": "frozen"},
        schedule=GRADUAL,
        hyperparameters={"epochs": epochs, "batch_size": 16},
    )
    with server.client() as http:
        created = http.post("/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    return job_id, int(client.hstrlen(Keys().job_layers(job_id), PLAN_KEY))


def test_a_10000_epoch_gradual_job_stores_a_plan_the_size_of_a_short_one(
    api: ApiServer, store: redis.Redis
) -> None:
    _, short = _submit(api, store, 10)
    job_id, long = _submit(api, store, 10_000)
    assert long - short < 64  # a few wider epoch numbers, nothing per epoch
    assert store.memory_usage(Keys().job_layers(job_id)) < 64 * 1024
    with api.client() as http:
        last = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 10_000}).json()
        sixth = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": 6}).json()
    assert last["epoch"] == 10_000 and last["source"] == "planned"
    assert {**last, "epoch": 6} == sixth
    assert last["trainable_params"] == last["total_params"]


def test_layers_of_a_short_job_answer_the_plan_expanded(http: httpx.Client) -> None:
    """The JSON the full per-epoch plan gave before, field for field."""
    body = job_body(schedule=GRADUAL, hyperparameters={"epochs": 4, "batch_size": 16})
    job_id = http.post("/v1/jobs", json=body).json()["id"]
    plan = http.post("/v1/plans", json=body).json()
    assert http.get(f"/v1/jobs/{job_id}/layers").json() == layer_status({PLAN_KEY: plan})
    for n in range(1, 5):
        got = http.get(f"/v1/jobs/{job_id}/layers", params={"epoch": n}).json()
        assert got == layer_status({PLAN_KEY: plan}, epoch=n)
