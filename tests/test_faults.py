"""Faults with real processes: a redis-server killed and restarted under a running job, a
message lost between delivery and claim, a worker stopped past its lease and resumed, a
worker shut down mid-epoch, a job that runs out of memory."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer
from safetensors.torch import load_file
from support import bits_equal
from worker_fixtures import Stack, digits_spec, write_base_weights, write_digits

from thaw.spec import JobSpec
from thaw.store.redis_server import free_port
from thaw.training import train

pytestmark = pytest.mark.slow

PER_CLASS = 40  # 400 images: 320 to train on, 10 steps of 32 per epoch
SPEC = digits_spec(epochs=2)


@pytest.fixture(scope="module")
def unbroken(module_tmp_path: Path) -> dict:
    """The final weights of the same job trained in one go, in this process."""
    root = module_tmp_path
    stack = Stack(root, "redis://unused", None)  # type: ignore[arg-type]
    write_base_weights(_mk(root / "models"))
    write_digits(_mk(root / "datasets"), per_class=PER_CLASS)
    train(JobSpec.model_validate(SPEC), root / "run", stack.settings)
    return load_file(str(root / "run" / "checkpoints" / "epoch-2" / "model.safetensors"))


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _prepare(stack: Stack) -> None:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=PER_CLASS)


def _assert_equal_to_unbroken(stack: Stack, job_id: str, unbroken: dict) -> None:
    run = stack.settings.jobs_dir / job_id / "checkpoints"
    final = load_file(str(run / "epoch-2" / "model.safetensors"))
    assert sorted(final) == sorted(unbroken)
    assert [k for k in unbroken if not bits_equal(unbroken[k], final[k])] == []


def _started_by(workers: dict, worker_id: str) -> str:
    """Which ``thaw worker`` (a supervisor, leader of its process group) runs the node
    that wrote ``worker_id`` (``host:pid:nonce``)."""
    group = os.getpgid(int(worker_id.split(":")[1]))
    return next(name for name, proc in workers.items() if proc.pid == group)


def _wait_log(stack: Stack, name: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in stack.log(name):
        assert time.monotonic() < deadline, f"{text!r} not in log {name}:\n{stack.log(name)}"
        time.sleep(0.1)


@pytest.fixture
def restartable(tmp_path: Path):
    """A redis-server with an append-only file on a fixed port, to kill and start again."""
    server = RedisServer(data_dir=tmp_path / "redis", port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def test_three_redis_restarts_during_a_job_leave_it_succeeded_on_its_first_attempt(
    tmp_path: Path, restartable: RedisServer, unbroken: dict
) -> None:
    client = redis.Redis.from_url(restartable.url, decode_responses=True)
    stack = Stack(tmp_path, restartable.url, client)
    for folder in ("data", "models", "datasets"):
        _mk(tmp_path / folder)
    _prepare(stack)
    try:
        stack.start_worker("w")
        job = stack.submit(SPEC)
        for at_step in (2, 8, 14):
            stack.wait_for(job.id, lambda j, s=at_step: j.progress.get("step", 0) >= s)
            restartable.stop()  # SIGTERM: Redis writes its append-only file and exits
            time.sleep(0.5)
            restartable.start()
        done = stack.wait_done(job.id)
        assert done.status == "succeeded", (done.error, stack.log("w"))
        assert done.attempts == 1
        assert "Redis unreachable" in stack.log("w")
        statuses = [
            e.data["status"] for e in stack.events.read(job.id, limit=10_000) if e.type == "status"
        ]
        assert statuses == ["queued", "running", "succeeded"]
        _assert_equal_to_unbroken(stack, job.id, unbroken)
    finally:
        stack.stop()
        client.close()


def test_a_message_dropped_between_delivery_and_claim_is_sent_again_once(stack: Stack) -> None:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=10)
    job = stack.submit(digits_spec(epochs=1))
    delivered = stack.client.rpop(stack.settings.queue)  # what a worker's fetch does...
    assert delivered is not None and job.id in delivered  # ...and then it dies
    stack.start_worker("a")
    stack.start_worker("b")
    ready = time.time()
    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    assert done.attempts == 1
    events = stack.events.read(job.id, limit=10_000)
    resent = [e for e in events if e.type == "log" and e.data.get("redispatched")]
    assert len(resent) == 1, [e.data for e in resent]  # two sweepers, one message
    assert "without a live message" in resent[0].data["message"]
    claimed = next(e for e in events if e.type == "status" and e.data["status"] == "running")
    period = 2 * stack.settings.lease_seconds
    waited = int(claimed.id.split("-")[0]) / 1000 - max(ready, done.created_ts)
    assert waited <= period + 4 * stack.settings.heartbeat_seconds + 2.0


def test_a_worker_stopped_past_its_lease_writes_nothing_after_the_new_claim(
    stack: Stack, unbroken: dict
) -> None:
    _prepare(stack)
    workers = {"a": stack.start_worker("a"), "b": stack.start_worker("b")}
    job = stack.submit(SPEC)
    first = stack.wait_for(job.id, lambda j: j.progress.get("step", 0) >= 3)
    old = _started_by(workers, first.worker)
    os.killpg(workers[old].pid, signal.SIGSTOP)  # the whole host stalls, as a VM pause would
    try:
        stack.wait_for(job.id, lambda j: j.token == 2 and j.progress.get("step", 0) >= 12)
    finally:
        os.killpg(workers[old].pid, signal.SIGCONT)
    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    _wait_log(stack, old, "stopped without another write")

    events = stack.events.read(job.id, limit=10_000)
    takeover = next(i for i, e in enumerate(events) if e.token == 2)
    assert events[takeover].data["worker"] != first.worker
    assert [e.to_dict() for e in events[takeover:] if e.token != 2] == []
    run = stack.settings.jobs_dir / job.id
    metas = [json.loads(p.read_text()) for p in sorted(run.glob("checkpoints/epoch-*/meta.json"))]
    assert [(m["name"], m["token"]) for m in metas] == [("epoch-1", 2), ("epoch-2", 2)]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best",
        "epoch-1",
        "epoch-2",
        "index.json",
        "last",
    ]
    assert "lease lost" in stack.log(old)
    _assert_equal_to_unbroken(stack, job.id, unbroken)


def test_sigterm_mid_epoch_hands_the_job_over_from_a_step_checkpoint(
    stack: Stack, unbroken: dict
) -> None:
    _prepare(stack)
    # Single worker nodes with slowed steps: the signal must land inside epoch 1 (the
    # supervisor's forwarding of SIGTERM is tested in test_worker_supervisor.py).
    workers = {name: stack.start_worker(name, preload="slow_steps") for name in ("a", "b")}
    job = stack.submit(SPEC)
    first = stack.wait_for(job.id, lambda j: j.progress.get("step", 0) >= 4)
    old = _started_by(workers, first.worker)
    workers[old].send_signal(signal.SIGTERM)
    assert workers[old].wait(timeout=120) == 0
    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    assert done.attempts == 1  # a hand-over is not a death

    events = stack.events.read(job.id, limit=10_000)
    statuses = [e.data for e in events if e.type == "status"]
    assert [s["status"] for s in statuses] == [
        "queued",
        "running",
        "queued",
        "running",
        "succeeded",
    ]
    assert statuses[2].get("released") is True
    assert statuses[3]["worker"] != first.worker
    logs = [e.data["message"] for e in events if e.type == "log"]
    saved = [m for m in logs if m.startswith("step checkpoint at step ")]
    assert len(saved) == 1
    step = int(saved[0].split()[4])
    assert 4 <= step < 10  # inside epoch 1
    assert f"resumed from step {step} (epoch 1, batch {step}, phase 0)" in logs
    assert not any(e.data.get("redispatched") for e in events)  # no wait for the lease
    run = stack.settings.jobs_dir / job.id
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    assert [c["name"] for c in index["checkpoints"]] == ["epoch-1", "epoch-2"]
    _assert_equal_to_unbroken(stack, job.id, unbroken)


def _rss_bytes(pid: int) -> int:
    """Anonymous and shared-memory pages the worker holds: what a leak grows and what the
    OOM killer weighs. File-backed pages (library code a later job runs for the first time,
    mapped weights) are left out: the kernel reclaims them, and they are no leak."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    held = [int(x.split()[1]) * 1024 for x in lines if x.startswith(("RssAnon:", "RssShmem:"))]
    assert len(held) == 2, "no RssAnon / RssShmem"
    return sum(held)


def test_out_of_memory_fails_one_job_and_the_worker_takes_the_next_at_its_baseline(
    stack: Stack,
) -> None:
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=10)
    worker = stack.start_worker("w", preload="oom_at_step")
    oom = stack.submit({**digits_spec(epochs=1), "name": "oom"})
    failed = stack.wait_done(oom.id)
    assert failed.status == "failed"
    assert failed.error.code == "out_of_memory"
    assert "hyperparameters.batch_size=32" in failed.error.message
    assert "lower hyperparameters.batch_size" in failed.error.message
    rss = []
    for _ in range(4):
        job = stack.submit(digits_spec(epochs=1))
        assert stack.wait_done(job.id).status == "succeeded"
        rss.append(_rss_bytes(worker.pid))
    assert max(rss) - rss[0] < 64 * 1024**2, rss


def test_a_holder_stalled_before_its_publish_makes_nothing_visible_after_the_new_claim(
    stack: Stack, unbroken: dict
) -> None:
    _prepare(stack)
    first = stack.start_worker("a", preload="stall_commit")
    job = stack.submit(SPEC)
    stack.wait_for(job.id, lambda j: j.token == 1)
    # b steps slowly, so it is still inside epoch 2 when a wakes up.
    stack.start_worker("b", preload="slow_steps")
    stack.wait_for(job.id, lambda j: j.token == 2)
    # a wakes right before publishing its epoch-2, as b's claim is new (b may not have
    # reached the run folder yet): the lease check under the commit lock refuses it.
    os.killpg(first.pid, signal.SIGCONT)
    _wait_log(stack, "a", "stopped without another write")

    run = stack.settings.jobs_dir / job.id / "checkpoints"
    index = json.loads((run / "index.json").read_text())
    assert [c["name"] for c in index["checkpoints"]] == ["epoch-1"]
    assert not (run / "epoch-2").exists()
    done = stack.wait_done(job.id)
    assert done.status == "succeeded", done.error
    logs = [e.data["message"] for e in stack.events.read(job.id, limit=10_000) if e.type == "log"]
    assert "resumed from epoch 1 (phase 0)" in logs
    metas = [json.loads(p.read_text()) for p in sorted(run.glob("epoch-*/meta.json"))]
    assert [(m["name"], m["token"]) for m in metas] == [("epoch-1", 1), ("epoch-2", 2)]
    assert sorted(p.name for p in run.iterdir()) == [
        "best",
        "epoch-1",
        "epoch-2",
        "index.json",
        "last",
    ]
    _assert_equal_to_unbroken(stack, job.id, unbroken)


def test_redis_outages_longer_than_the_lease_leave_the_job_with_its_live_holder(
    tmp_path: Path, restartable: RedisServer
) -> None:
    client = redis.Redis.from_url(restartable.url, decode_responses=True)
    stack = Stack(tmp_path, restartable.url, client)
    for folder in ("data", "models", "datasets"):
        _mk(tmp_path / folder)
    _prepare(stack)
    lease = stack.settings.lease_seconds
    try:
        # The holder renews slowly and the other worker sweeps fast: after each outage the
        # sweeper sees the lapsed lease first.
        stack.extra_env["THAW_HEARTBEAT_SECONDS"] = "1.5"
        stack.start_worker("a", preload="slow_steps")
        job = stack.submit(
            {**SPEC, "hyperparameters": {**SPEC["hyperparameters"], "batch_size": 8}}
        )
        stack.wait_for(job.id, lambda j: j.token == 1)
        stack.extra_env["THAW_HEARTBEAT_SECONDS"] = "0.5"
        stack.start_worker("b", preload="slow_steps")
        for at_step in (4, 30, 56):  # 80 steps; training goes on through each outage
            stack.wait_for(job.id, lambda j, s=at_step: j.progress.get("step", 0) >= s)
            restartable.stop()
            time.sleep(lease + 1.0)  # every lease lapses
            restartable.start()
        done = stack.wait_done(job.id)
        assert done.status == "succeeded", (done.error, stack.log("a"), stack.log("b"))
        assert (done.attempts, done.token) == (1, 1)
        events = stack.events.read(job.id, limit=10_000)
        assert [e.data["status"] for e in events if e.type == "status"] == [
            "queued",
            "running",
            "succeeded",
        ]
        assert not any(e.data.get("redispatched") for e in events)
        assert "Task thaw.train" not in stack.log("b")  # b never got the job
        index = json.loads(
            (stack.settings.jobs_dir / job.id / "checkpoints" / "index.json").read_text()
        )
        assert ([c["name"] for c in index["checkpoints"]], index["token"]) == (
            ["epoch-1", "epoch-2"],
            1,
        )
    finally:
        stack.stop()
        client.close()
