"""The CPUs a process may use (affinity, cgroup cpuset and quota); torch threads sized to them."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuShare:
    """What one process may use, and the torch threads it runs with."""

    affinity: int  # CPUs in the process's scheduler affinity mask
    cpuset: int | None  # CPUs in the cgroup's effective cpuset, None without one
    quota: float | None  # CPUs' worth of time the cgroup's quota allows, None if unlimited
    share: int  # processes splitting these CPUs
    threads: int  # torch intra-op threads
    interop: int  # torch inter-op threads
    source: str  # what decided ``threads``: THAW_TORCH_THREADS, affinity, cpuset or quota

    @property
    def usable(self) -> float:
        """CPUs this process may keep busy: the tightest of affinity, cpuset and quota."""
        limits = [float(self.affinity), self.cpuset, self.quota]
        return min(float(x) for x in limits if x is not None) / self.share

    @property
    def loader_workers(self) -> int:
        """DataLoader processes beside the training thread: one CPU stays with it, at most 8."""
        return min(8, max(1, math.floor(self.usable) - 1))

    def describe(self) -> str:
        parts = [f"affinity {self.affinity} CPUs"]
        if self.cpuset is not None:
            parts.append(f"cpuset {self.cpuset}")
        if self.quota is not None:
            parts.append(f"cgroup quota {self.quota:g} CPUs")
        if self.share > 1:
            parts.append(f"split {self.share} ways")
        return (
            f"torch threads {self.threads} (inter-op {self.interop}) from {self.source}: "
            + ", ".join(parts)
        )


def cpu_share(
    requested: int = 0,
    share: int = 1,
    *,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_CGROUP,
) -> CpuShare:
    """The CPUs this process may use split ``share`` ways, and torch threads for one part.

    ``requested`` (THAW_TORCH_THREADS) wins when above 0. Otherwise the threads are the
    tightest of the affinity mask, the cgroup's effective cpuset and its CPU quota (cgroup v2
    ``cpu.max`` or v1 ``cpu.cfs_quota_us``, the smallest on the way up to ``cgroup_root``),
    rounded down and at least 1: a thread beyond them only waits for a CPU and stalls the
    others at each parallel region's barrier."""
    affinity = len(os.sched_getaffinity(0))
    folders = _cgroup_folders(cgroup_root, proc_cgroup)
    cpuset = _cpuset(folders)
    quota = _quota(folders)
    limits = {"affinity": float(affinity), "cpuset": cpuset, "quota": quota}
    source = min(
        (name for name, value in limits.items() if value is not None),
        key=lambda name: limits[name] or 0.0,
    )
    fair = max(1, math.floor(float(limits[source] or 1.0) / max(1, share)))
    threads = requested if requested > 0 else fair
    return CpuShare(
        affinity=affinity,
        cpuset=None if cpuset is None else int(cpuset),
        quota=quota,
        share=max(1, share),
        threads=threads,
        interop=threads,
        source="THAW_TORCH_THREADS" if requested > 0 else source,
    )


def passive_wait() -> bool:
    """OpenMP threads sleep between torch's parallel regions instead of spinning, unless
    ``OMP_WAIT_POLICY`` says otherwise; whether it took effect (torch not yet imported).

    Spinning costs nothing on an idle machine, but beside other work the spinning threads
    take the CPUs the training thread waits for: a small-batch run on a busy 2-CPU host
    used 2.3x the CPU time and 2.4x the wall time of the same run with passive waits."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def apply_cpu_share(requested: int = 0, share: int = 1) -> CpuShare:
    """Size torch's intra- and inter-op threads to :func:`cpu_share`; what was applied.

    Call it before the first torch operation: torch fixes the inter-op pool once it is used
    (the intra-op count still applies then)."""
    import torch

    chosen = cpu_share(requested, share)
    torch.set_num_threads(chosen.threads)
    if torch.get_num_interop_threads() != chosen.interop:
        with contextlib.suppress(RuntimeError):  # the pool started already: it stays
            torch.set_num_interop_threads(chosen.interop)
    return chosen


# cgroup files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Folders:
    v2: list[Path]  # the process's cgroup v2 folder and its parents up to the root
    cpu: list[Path]  # v1 cpu controller, the same way
    cpuset: list[Path]  # v1 cpuset controller


def _cgroup_folders(root: Path, proc_cgroup: Path) -> _Folders:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return _Folders(
        v2=_chain(root, paths.get("", "/")),
        cpu=_chain(_v1_mount(root, "cpu"), paths.get("cpu", "/")),
        cpuset=_chain(root / "cpuset", paths.get("cpuset", "/")),
    )


def _v1_mount(root: Path, controller: str) -> Path:
    for name in (controller, "cpu,cpuacct", "cpuacct,cpu"):
        if (root / name).is_dir():
            return root / name
    return root / controller


def _chain(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and its parents up to ``mount``; just ``mount`` when the folder
    is not there (a container sees its own cgroup at the mount's root)."""
    folder = mount / path.strip("/")
    if not folder.is_dir():
        return [mount]
    chain = [folder]
    while chain[-1] != mount and mount in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota(folders: _Folders) -> float | None:
    found: list[float] = []
    for folder in folders.v2:
        text = _read(folder / "cpu.max")
        if text:
            limit, _, period = text.partition(" ")
            if limit != "max" and period:
                found.append(int(limit) / int(period))
    for folder in folders.cpu:
        limit_text, period_text = (
            _read(folder / "cpu.cfs_quota_us"),
            _read(folder / "cpu.cfs_period_us"),
        )
        if limit_text and period_text and int(limit_text) > 0:
            found.append(int(limit_text) / int(period_text))
    return min(found) if found else None


def _cpuset(folders: _Folders) -> int | None:
    for folder, name in [(f, "cpuset.cpus.effective") for f in folders.v2] + [
        (f, "cpuset.effective_cpus") for f in folders.cpuset
    ]:
        text = _read(folder / name)
        if text:
            return len(parse_cpu_list(text))
    return None


def parse_cpu_list(text: str) -> set[int]:
    """The CPUs of a kernel CPU list such as ``0-3,8,10-11``."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def cpu_slices(parts: int) -> list[set[int]] | None:
    """Disjoint parts of this process's affinity for ``parts`` worker processes, each as
    many CPUs as :func:`cpu_share` gives one of them (one CPU each, round robin, when there
    are more parts than CPUs); None for a single process, which keeps the whole affinity."""
    if parts <= 1:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    size = cpu_share(share=parts).threads
    if size * parts > len(cpus):
        return [{cpus[i % len(cpus)]} for i in range(parts)]
    return [set(cpus[i * size : (i + 1) * size]) for i in range(parts)]


def format_cpu_list(cpus: set[int]) -> str:
    """``cpus`` as a kernel CPU list, ``0-3,8``."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
