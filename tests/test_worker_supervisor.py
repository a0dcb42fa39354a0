"""`thaw worker`: GPU selection, pinned worker processes under a supervisor that restarts
them, and what they publish (GET /v1/workers, /readyz, /metrics), with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_fixtures import KEYS, ApiServer, ApiServers
from support import metric_samples
from worker_fixtures import ROOT, Stack, digits_spec, write_base_weights, write_digits

from thaw.settings import Settings
from thaw.store import WorkerRegistry
from worker.supervisor import (
    GpuSelectionError,
    NvidiaDevices,
    Slot,
    Supervisor,
    node_name,
    nvidia_devices,
    plan_slots,
    require_usable_gpus,
)

ADMIN_KEY = "admin-key-5555555555"

# --- GPU selection (no processes) ----------------------------------------------------


def test_all_without_cuda_runs_one_unpinned_cpu_worker():
    assert plan_slots("all", False, "w@box", []) == [Slot("w-cpu@box", None)]


def test_all_runs_one_worker_per_visible_gpu_named_for_host_and_device():
    assert plan_slots("all", False, None, ["0", "1"]) == [
        Slot(node_name(None, "gpu0"), "0"),
        Slot(node_name(None, "gpu1"), "1"),
    ]
    assert node_name("w@box", "gpu1") == "w-gpu1@box"
    assert plan_slots("1", False, "@box", ["0", "1"]) == [Slot("gpu1@box", "1")]


def test_none_runs_one_cpu_worker_with_every_gpu_hidden():
    assert plan_slots("none", False, "w@box", ["0", "1"]) == [Slot("w-cpu@box", "")]


def test_ids_without_cuda_need_allow_cpu():
    with pytest.raises(GpuSelectionError) as exc:
        plan_slots("0,1", False, "w@box", [])
    assert str(exc.value) == (
        "--gpus 0,1: this host has no CUDA GPU; use --gpus none for one CPU worker, "
        "or add --allow-cpu to run one CPU worker per listed id"
    )
    pinned = plan_slots("0,1", True, "w@box", [])
    assert pinned == [Slot("w-cpu0@box", "0"), Slot("w-cpu1@box", "1")]


def test_unknown_or_malformed_ids_are_refused_with_what_to_pass():
    with pytest.raises(GpuSelectionError) as exc:
        plan_slots("0,5", False, "w@box", ["0", "1"])
    assert str(exc.value) == (
        "--gpus 0,5: no GPU 5 on this host; the GPUs here are 0,1 (or pass --gpus all)"
    )
    with pytest.raises(GpuSelectionError, match="expected 'all', 'none' or comma-separated"):
        plan_slots("first", False, None, ["0"])
    with pytest.raises(GpuSelectionError, match="each GPU id once"):
        plan_slots("0,0", False, None, ["0"])


def test_attached_gpus_are_read_from_device_nodes_and_the_driver_version(tmp_path):
    for name in ("nvidia1", "nvidia0", "nvidia10", "nvidiactl", "nvidia-uvm", "nvidia-caps"):
        (tmp_path / name).touch()
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build\n"
    )
    found = nvidia_devices(tmp_path, version)
    assert (found.ids, found.driver) == (["0", "1", "10"], "535.104.05")
    none = nvidia_devices(tmp_path / "missing", tmp_path / "missing")
    assert (none.ids, none.driver) == ([], None)


def test_gpus_attached_but_unusable_fail_naming_the_driver_unless_cpu_is_allowed():
    old_driver = NvidiaDevices(["0", "1"], "535.104.05", "13.2")
    for gpus in ("all", "0,1"):
        with pytest.raises(GpuSelectionError) as exc:
            require_usable_gpus(gpus, False, [], old_driver)
        assert str(exc.value) == (
            f"--gpus {gpus}: NVIDIA GPU 0,1 attached but CUDA sees none: torch's CUDA 13.2 "
            "needs NVIDIA driver 580.65.06 or newer (this host has 535.104.05), and in a "
            "container the NVIDIA Container Toolkit; fix that, or add --allow-cpu to train "
            "on the CPU"
        )
    with pytest.raises(GpuSelectionError, match=r"GPU 0 attached .* built without CUDA"):
        require_usable_gpus("all", False, [], NvidiaDevices(["0"], None, None))
    # Allowed, asked for the CPU, usable, or nothing attached: no objection.
    require_usable_gpus("all", True, [], old_driver)
    require_usable_gpus("none", False, [], old_driver)
    require_usable_gpus("all", False, ["0", "1"], old_driver)
    require_usable_gpus("all", False, [], NvidiaDevices([], None, "13.2"))


def test_cli_refuses_gpu_ids_on_a_host_without_cuda():
    proc = subprocess.run(
        [sys.executable, "-m", "thaw.cli", "worker", "--gpus", "0,1"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().endswith("add --allow-cpu to run one CPU worker per listed id")


def test_supervisor_restarts_a_dying_child_with_growing_backoff(tmp_path):
    """A child that keeps dying is restarted after 0.2, 0.4, 0.8 s; SIGTERM stops it all."""
    starts = tmp_path / "starts"
    script = f"import time; open({str(starts)!r}, 'a').write(f'{{time.monotonic()}}\\n')"
    lines: list[str] = []
    settings = Settings(supervisor_backoff_seconds=0.2, supervisor_backoff_max_seconds=0.8)
    supervisor = Supervisor(
        [Slot("dies@test", "7")],
        settings,
        argv=lambda slot: [sys.executable, "-c", script],
        log=lines.append,
    )

    def stop_after_five_starts(*_: Any) -> None:
        if starts.exists() and len(starts.read_text().split()) >= 5:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGALRM, stop_after_five_starts)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    try:
        assert supervisor.run() == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    delays = [line.rsplit("restarting in ", 1)[1] for line in lines if "restarting in" in line]
    assert delays[:4] == ["0.2 s", "0.4 s", "0.8 s", "0.8 s"]
    assert lines[0].startswith("started dies@test (CUDA_VISIBLE_DEVICES='7'), pid ")
    assert lines[-1] == "every worker process has stopped"


# --- real worker processes --------------------------------------------------------


def start_supervisor(stack: Stack, *args: str, expect: int) -> subprocess.Popen[bytes]:
    """`thaw worker ARGS`; returns once ``expect`` workers heartbeat."""
    log = open(stack.root / "w.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "thaw.cli", "worker", *args],
        env={**stack.env(), "THAW_SUPERVISOR_BACKOFF_SECONDS": "0.2"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.workers.append(proc)
    wait_until(stack, lambda: len(WorkerRegistry(stack.client).live()) >= expect, proc)
    return proc


def wait_until(stack: Stack, predicate: Callable[[], Any], proc=None, timeout=120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting:\n{stack.log('w')}")
        time.sleep(0.1)
    return found


@pytest.fixture
def keyed_api(stack: Stack, api_servers: ApiServers) -> Iterator[ApiServer]:
    """The API on the stack's Redis and folders, with tenants alice and bob."""
    pairs = ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items())
    env = {"THAW_API_KEYS": pairs, "THAW_ADMIN_KEYS": ADMIN_KEY}
    with api_servers.serving(env, redis_url=stack.redis_url, root=stack.root) as server:
        yield server


@pytest.mark.slow
def test_two_pinned_cpu_workers_train_two_jobs_at_once_and_show_in_workers_and_metrics(
    stack: Stack, keyed_api: ApiServer
):
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=20)
    start_supervisor(stack, "--allow-cpu", "--gpus", "0,1", "--hostname", "t@test", expect=2)
    alice, bob = keyed_api.client(KEYS["alice"]), keyed_api.client(KEYS["bob"])
    anonymous, admin = keyed_api.client(), keyed_api.client(ADMIN_KEY)

    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok"}
    assert alice.get("/readyz").json() == {"status": "ok", "redis": True, "workers": 2}
    assert admin.get("/readyz").json()["worker_ids"] == WorkerRegistry(stack.client).live_workers()
    assert anonymous.get("/v1/workers").status_code == 401
    assert anonymous.get("/metrics").status_code == 401

    jobs = []
    for _ in range(2):
        created = alice.post("/v1/jobs", json=digits_spec(epochs=2))
        assert created.status_code == 202, created.text
        jobs.append(created.json()["id"])

    calls = 0

    def both_busy() -> list[dict] | None:
        nonlocal calls
        calls += 1
        listed = alice.get("/v1/workers")
        assert listed.status_code == 200, listed.text
        rows = listed.json()["data"]
        return rows if sorted(r["job"] or "" for r in rows) == sorted(jobs) else None

    rows = wait_until(stack, both_busy)
    assert sorted(r["name"] for r in rows) == ["t-cpu0@test", "t-cpu1@test"]
    assert sorted(r["gpu"] for r in rows) == ["0", "1"]
    for row in rows:
        assert row["busy"] is True
        assert row["device"]["type"] == "cpu"
        assert row["host"] and row["pid"] and row["torch"]
        assert row["memory"]["rss"] > 0
    assert bob.get("/v1/workers").json()["data"] == []  # no worker runs a job of bob's

    for job_id in jobs:
        done = stack.wait_done(job_id)
        assert done.status == "succeeded", done.error
    runners = [
        e.data["worker"]
        for j in jobs
        for e in stack.events.read(j, limit=1000)
        if e.type == "status" and e.data["status"] == "running"
    ]
    assert len(set(runners)) == 2, "each worker trained one of the jobs, once"

    def settled() -> list[dict] | None:
        nonlocal calls
        calls += 1
        rows = admin.get("/v1/workers").json()["data"]
        return rows if [r["jobs_done"] for r in rows] == [1, 1] else None

    rows = wait_until(stack, settled)
    assert all(r["busy"] is False and r["job"] is None for r in rows)
    assert all(r["samples_per_s"] > 0 and r["step_time_s"] > 0 for r in rows)

    assert alice.get("/v1/workers").json()["data"] == []  # her jobs are done
    calls += 1
    samples = metric_samples(admin)
    assert samples[("thaw_jobs", frozenset({("status", "succeeded")}))] == 2
    assert samples[("thaw_jobs", frozenset({("status", "queued")}))] == 0
    assert samples[("thaw_workers_live", frozenset())] == 2
    assert samples[("thaw_queue_depth", frozenset({("queue", "gpu")}))] == 0
    for name, gpu in (("t-cpu0@test", "0"), ("t-cpu1@test", "1")):
        labels = frozenset({("worker", name), ("gpu", gpu)})
        assert samples[("thaw_worker_jobs_done_total", labels)] == 1
        assert samples[("thaw_worker_busy", labels)] == 0
        assert samples[("thaw_worker_samples_per_second", labels)] > 0
        assert samples[("thaw_worker_memory_bytes", labels | {("kind", "rss")})] > 0
    listed = frozenset({("method", "GET"), ("route", "/v1/workers"), ("status", "200")})
    assert samples[("thaw_http_requests_total", listed)] == calls + 1  # bob's call
    created = frozenset({("method", "POST"), ("route", "/v1/jobs"), ("status", "202")})
    assert samples[("thaw_http_requests_total", created)] == 2
    refused = frozenset({("method", "GET"), ("route", "/metrics"), ("status", "401")})
    assert samples[("thaw_http_requests_total", refused)] == 1
    count = frozenset({("method", "GET"), ("route", "/v1/workers")})
    assert samples[("thaw_http_request_duration_seconds_count", count)] == calls + 2


@pytest.mark.slow
def test_a_killed_worker_process_is_restarted_and_sigterm_stops_everything(stack: Stack):
    supervisor = start_supervisor(stack, "--gpus", "none", "--hostname", "k@test", expect=1)
    registry = WorkerRegistry(stack.client)
    [(first_id, first)] = registry.live()
    assert first["name"] == "k-cpu@test" and first["gpu"] is None

    os.kill(first["pid"], signal.SIGKILL)
    [(second_id, second)] = wait_until(
        stack, lambda: [w for w in registry.live() if w[1]["pid"] != first["pid"]]
    )
    assert second["name"] == "k-cpu@test" and second_id != first_id
    assert supervisor.poll() is None
    assert "k-cpu@test exited with -9" in stack.log("w")
    assert healthcheck(stack).returncode == 0

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(second["pid"], 0)
    assert second_id not in registry.live_workers(), "a clean stop leaves the registry"
    assert "every worker process has stopped" in stack.log("w")
    stopped = healthcheck(stack)
    assert stopped.returncode == 1
    assert stopped.stderr.strip().startswith("unhealthy: no worker on ")


def healthcheck(stack: Stack) -> subprocess.CompletedProcess[str]:
    """The compose worker's health probe, run on this host."""
    return subprocess.run(
        [sys.executable, "-m", "worker.healthcheck"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_options_live_in_app_conf_only():
    from worker import celery_app

    conf = celery_app.app.conf
    assert conf.worker_pool == "threads" and conf.worker_concurrency == 1
    assert conf.worker_disable_prefetch is True and conf.task_acks_late is False
    assert not hasattr(celery_app, "worker_argv"), "no second copy of the options as argv"
