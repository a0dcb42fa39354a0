"""Torch threads sized to the CPUs a process may use: affinity, cgroup cpuset and quota, the
THAW_TORCH_THREADS override, and the worker processes that report what they applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from worker_fixtures import Stack

from thaw.cpus import cpu_share, cpu_slices, format_cpu_list, parse_cpu_list
from thaw.store import WorkerRegistry

AFFINITY = len(os.sched_getaffinity(0))


def _cgroup(tmp_path: Path, files: dict[str, str], own: str = "0::/") -> dict[str, Path]:
    """A cgroup folder tree under ``tmp_path`` and a /proc/self/cgroup that places us in it."""
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(own + "\n")
    return {"cgroup_root": root, "proc_cgroup": proc}


def test_without_cgroup_limits_the_threads_are_the_affinity(tmp_path):
    chosen = cpu_share(**_cgroup(tmp_path, {}))
    assert (chosen.threads, chosen.interop, chosen.source) == (AFFINITY, AFFINITY, "affinity")
    assert (chosen.cpuset, chosen.quota, chosen.usable) == (None, None, float(AFFINITY))


def test_v2_quota_of_a_parent_cgroup_bounds_the_threads_rounded_down(tmp_path):
    files = {"a/cpu.max": "150000 100000", "a/b/cpu.max": "max 100000"}
    chosen = cpu_share(**_cgroup(tmp_path, files, own="0::/a/b"))
    assert chosen.quota == 1.5
    assert (chosen.threads, chosen.source) == (1, "quota")
    assert "cgroup quota 1.5 CPUs" in chosen.describe()


def test_v2_quota_at_the_mount_root_when_the_own_folder_is_not_there(tmp_path):
    """In a container the process's cgroup is the mount's root, whatever /proc says."""
    chosen = cpu_share(**_cgroup(tmp_path, {"cpu.max": "50000 100000"}, own="0::/docker/abc"))
    assert (chosen.quota, chosen.threads) == (0.5, 1)


def test_v1_cfs_quota_counts_and_minus_one_means_unlimited(tmp_path):
    own = "4:cpu,cpuacct:/job\n3:cpuset:/job\n0::/"
    limited = {
        "cpu,cpuacct/job/cpu.cfs_quota_us": "50000",
        "cpu,cpuacct/job/cpu.cfs_period_us": "100000",
    }
    assert cpu_share(**_cgroup(tmp_path / "a", limited, own)).quota == 0.5
    free = {"cpu,cpuacct/job/cpu.cfs_quota_us": "-1", "cpu,cpuacct/job/cpu.cfs_period_us": "100000"}
    assert cpu_share(**_cgroup(tmp_path / "b", free, own)).quota is None


@pytest.mark.parametrize("name", ["cpuset.cpus.effective", "cpuset/cpuset.effective_cpus"])
def test_a_cpuset_smaller_than_the_affinity_bounds_the_threads(tmp_path, name):
    chosen = cpu_share(**_cgroup(tmp_path, {name: "3"}))
    assert (chosen.cpuset, chosen.threads) == (1, 1)
    assert chosen.source == ("cpuset" if AFFINITY > 1 else "affinity")


def test_a_share_splits_the_cpus_and_the_setting_overrides_everything(tmp_path):
    roots = _cgroup(tmp_path, {"cpu.max": "400000 100000"})
    if AFFINITY >= 4:
        assert cpu_share(share=2, **roots).threads == 2
    assert cpu_share(share=64, **roots).threads == 1
    chosen = cpu_share(requested=3, **roots)
    assert (chosen.threads, chosen.interop, chosen.source) == (3, 3, "THAW_TORCH_THREADS")


def test_cpu_lists_read_and_write_the_kernel_format():
    assert parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert format_cpu_list({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"


def test_slices_for_worker_processes_are_disjoint_parts_of_the_affinity():
    assert cpu_slices(1) is None
    slices = cpu_slices(2)
    assert slices is not None and len(slices) == 2
    assert all(s <= os.sched_getaffinity(0) for s in slices)
    if AFFINITY >= 2:
        assert not slices[0] & slices[1]


PROBE = """
import os, sys
os.sched_setaffinity(0, {0})
from thaw.cpus import apply_cpu_share
applied = apply_cpu_share(int(sys.argv[1]))
import torch
print(applied.threads, torch.get_num_threads(), torch.get_num_interop_threads())
"""


@pytest.mark.parametrize(("requested", "expected"), [(0, "1 1 1"), (2, "2 2 2")])
def test_a_process_on_one_cpu_runs_one_torch_thread_unless_told(requested, expected):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(requested)], capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[-2] == expected


def _heartbeats(stack: Stack, expect: int, proc: subprocess.Popen[bytes]) -> list[dict]:
    registry = WorkerRegistry(stack.client)
    import time

    deadline = time.monotonic() + 120
    while len(live := registry.live()) < expect:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(stack.log("w"))
        time.sleep(0.1)
    return [info for _, info in live]


def _spawn(stack: Stack, argv: list[str], cpus: set[int] | None) -> subprocess.Popen[bytes]:
    log = open(stack.root / "w.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, *argv],
        env={
            **{k: v for k, v in stack.env().items() if k != "OMP_WAIT_POLICY"},
            "THAW_TORCH_THREADS": "0",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    stack.workers.append(proc)
    return proc


def test_a_worker_on_one_cpu_registers_one_torch_thread(stack: Stack):
    proc = _spawn(stack, ["-m", "worker.node", "--hostname", "one@test"], {0})
    (info,) = _heartbeats(stack, 1, proc)
    device = info["device"]
    assert (device["type"], device["cpus"], device["torch_threads"]) == ("cpu", 1, 1)


@pytest.mark.skipif(AFFINITY < 2, reason="needs two CPUs to split")
def test_thaw_worker_gives_each_slot_its_own_cpus_and_threads(stack: Stack):
    argv = ["-m", "thaw.cli", "worker", "--allow-cpu", "--gpus", "0,1", "--hostname", "s@test"]
    proc = _spawn(stack, argv, None)
    infos = _heartbeats(stack, 2, proc)
    share = AFFINITY // 2
    assert [(i["device"]["cpus"], i["device"]["torch_threads"]) for i in infos] == [
        (share, share)
    ] * 2
    for info in infos:  # set by `thaw worker` before torch loaded, inherited by each node
        environ = Path(f"/proc/{info['pid']}/environ").read_bytes().split(b"\0")
        assert b"OMP_WAIT_POLICY=PASSIVE" in environ
    log = stack.log("w")
    assert "(CUDA_VISIBLE_DEVICES='0', CPUs " in log and "(CUDA_VISIBLE_DEVICES='1', CPUs " in log


WAIT = (
    "from thaw.cpus import passive_wait; import os; "
    "print(passive_wait(), os.environ['OMP_WAIT_POLICY'])"
)


@pytest.mark.parametrize(
    ("given", "first", "expected"),
    [
        (None, "", "True PASSIVE"),
        ("ACTIVE", "", "True ACTIVE"),
        (None, "import torch; ", "False PASSIVE"),
    ],
)
def test_openmp_threads_wait_passively_unless_told_and_only_before_torch_loads(
    given, first, expected
):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"OMP_WAIT_POLICY": given} if given else {}
    done = subprocess.run(
        [sys.executable, "-c", first + WAIT], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == expected
