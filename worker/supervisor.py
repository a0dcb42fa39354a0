"""``thaw worker``: one Celery worker process per GPU, each pinned with
``CUDA_VISIBLE_DEVICES`` (and, when there are several, each to its own part of the
CPUs, so their torch threads do not fight), kept running by a small supervisor.

The supervisor restarts a worker process that dies (waiting ``supervisor_backoff_seconds``,
doubling up to ``supervisor_backoff_max_seconds`` while it keeps dying young), passes
SIGTERM and SIGINT on to every worker process as SIGTERM (Celery's warm shutdown; a second
signal sends SIGQUIT, its cold shutdown) and exits once they are all gone. The worker
processes stay in the supervisor's process group, so a kill of the group reaches them too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from thaw.cpus import cpu_slices, format_cpu_list
from thaw.settings import Settings

POLL_SECONDS = 0.2


class GpuSelectionError(Exception):
    """``--gpus`` names devices this host does not have; the message says what to pass."""


@dataclass(frozen=True)
class Slot:
    """One worker process: its Celery node name and its ``CUDA_VISIBLE_DEVICES`` value
    (``None`` leaves the environment as it is)."""

    name: str
    gpu: str | None


def visible_gpus() -> list[str]:
    """Ids of the GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` spells them.

    NVML counts the devices, so the supervisor never creates a CUDA context."""
    import torch

    count = torch.cuda.device_count()
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    listed = [g for g in listed if g]
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return listed[:count]
    return [str(i) for i in range(count)]


# The oldest NVIDIA driver each CUDA major version runs on (minor version compatibility).
MIN_DRIVER_FOR_CUDA = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}


@dataclass(frozen=True)
class NvidiaDevices:
    """The NVIDIA GPUs handed to this process (``/dev/nvidiaN``, present even when CUDA
    cannot use them), the driver's version, and the CUDA version torch is built for."""

    ids: list[str]
    driver: str | None
    cuda: str | None


def nvidia_devices(
    dev: Path = Path("/dev"), version_file: Path = Path("/proc/driver/nvidia/version")
) -> NvidiaDevices:
    import torch

    ids = sorted(
        (m[1] for p in dev.glob("nvidia*") if (m := re.fullmatch(r"nvidia(\d+)", p.name))),
        key=int,
    )
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d[\d.]*)", version_file.read_text())
    except OSError:
        found = None
    return NvidiaDevices(ids, found[1] if found else None, torch.version.cuda)


def require_usable_gpus(
    gpus: str, allow_cpu: bool, visible: Sequence[str], nvidia: NvidiaDevices
) -> None:
    """Refuse to fall back to the CPU when GPUs were handed over but CUDA cannot use them
    (typically a driver older than torch's CUDA needs), unless ``allow_cpu``."""
    if visible or allow_cpu or not nvidia.ids or parse_gpus(gpus) == []:
        return
    if nvidia.cuda is None:
        cause = "the installed torch is built without CUDA"
    else:
        needed = MIN_DRIVER_FOR_CUDA.get(nvidia.cuda.split(".")[0], "the one it names")
        has = f" (this host has {nvidia.driver})" if nvidia.driver else ""
        cause = (
            f"torch's CUDA {nvidia.cuda} needs NVIDIA driver {needed} or newer{has}, "
            "and in a container the NVIDIA Container Toolkit"
        )
    raise GpuSelectionError(
        f"--gpus {gpus}: NVIDIA GPU {','.join(nvidia.ids)} attached but CUDA sees none: "
        f"{cause}; fix that, or add --allow-cpu to train on the CPU"
    )


def node_name(hostname: str | None, device: str) -> str:
    """``gpu0@host``; with ``--hostname NAME@HOST``, ``NAME-gpu0@HOST``."""
    if not hostname:
        return f"{device}@{socket.gethostname()}"
    prefix, at, host = hostname.rpartition("@")
    if not at:
        prefix, host = hostname, socket.gethostname()
    return f"{prefix}-{device}@{host}" if prefix else f"{device}@{host}"


def parse_gpus(gpus: str) -> list[str] | None:
    """``all`` gives ``None``; ``none`` an empty list; ``0,2`` the ids in order."""
    text = gpus.strip().lower()
    if text == "all":
        return None
    if text == "none":
        return []
    ids = [part.strip() for part in text.split(",")]
    if not ids or any(not part.isdigit() for part in ids):
        raise GpuSelectionError(
            f"--gpus: expected 'all', 'none' or comma-separated GPU ids such as 0,2; got {gpus!r}"
        )
    if len(set(ids)) != len(ids):
        raise GpuSelectionError(f"--gpus: each GPU id once, got {gpus!r}")
    return ids


def plan_slots(
    gpus: str, allow_cpu: bool, hostname: str | None, visible: Sequence[str]
) -> list[Slot]:
    """The worker processes ``thaw worker --gpus GPUS`` runs on a host with ``visible`` GPUs."""
    wanted = parse_gpus(gpus)
    if wanted is None:
        if not visible:
            return [Slot(node_name(hostname, "cpu"), None)]
        return [Slot(node_name(hostname, f"gpu{g}"), g) for g in visible]
    if not wanted:
        return [Slot(node_name(hostname, "cpu"), "")]
    if not visible:
        if not allow_cpu:
            raise GpuSelectionError(
                f"--gpus {gpus}: this host has no CUDA GPU; use --gpus none for one CPU "
                "worker, or add --allow-cpu to run one CPU worker per listed id"
            )
        return [Slot(node_name(hostname, f"cpu{g}"), g) for g in wanted]
    missing = [g for g in wanted if g not in visible]
    if missing:
        raise GpuSelectionError(
            f"--gpus {gpus}: no GPU {','.join(missing)} on this host; "
            f"the GPUs here are {','.join(visible)} (or pass --gpus all)"
        )
    return [Slot(node_name(hostname, f"gpu{g}"), g) for g in wanted]


def child_argv(slot: Slot) -> list[str]:
    return [sys.executable, "-m", "worker.node", "--hostname", slot.name]


@dataclass
class _Child:
    slot: Slot
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None
    signals_sent: int = 0


@dataclass
class Supervisor:
    slots: Sequence[Slot]
    settings: Settings
    argv: Callable[[Slot], list[str]] = child_argv
    log: Callable[[str], None] = field(
        default=lambda line: print(f"thaw worker: {line}", file=sys.stderr, flush=True)
    )

    def __post_init__(self) -> None:
        self._children = [_Child(slot) for slot in self.slots]
        self._signals = 0
        self._cpus = cpu_slices(len(self.slots))

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for child in self._children:
                self._start(child)
            while not self._signals or self._alive():
                self._forward_signals()
                self._reap()
                self._restart_due()
                time.sleep(POLL_SECONDS)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.log("every worker process has stopped")
        return 0

    def _alive(self) -> list[_Child]:
        return [c for c in self._children if c.process is not None and c.process.poll() is None]

    def _start(self, child: _Child) -> None:
        env = dict(os.environ)
        if child.slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = child.slot.gpu
        cpus = self._cpus[self._children.index(child)] if self._cpus else None
        child.process = subprocess.Popen(
            self.argv(child.slot),
            env=env,
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
        child.started = time.monotonic()
        child.restart_at = None
        child.signals_sent = 0
        pins = [] if child.slot.gpu is None else [f"CUDA_VISIBLE_DEVICES={child.slot.gpu!r}"]
        pins += [] if cpus is None else [f"CPUs {format_cpu_list(cpus)}"]
        pin = f" ({', '.join(pins)})" if pins else ""
        self.log(f"started {child.slot.name}{pin}, pid {child.process.pid}")

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.process is None or child.restart_at is not None:
                continue
            code = child.process.poll()
            if code is None or self._signals:
                continue
            lived = now - child.started
            if lived >= self.settings.supervisor_stable_seconds:
                child.quick_deaths = 0
            delay = min(
                self.settings.supervisor_backoff_max_seconds,
                self.settings.supervisor_backoff_seconds * 2**child.quick_deaths,
            )
            child.quick_deaths += 1
            child.restart_at = now + delay
            self.log(
                f"{child.slot.name} exited with {code} after {lived:.1f} s; "
                f"restarting in {delay:.1f} s"
            )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is not None and now >= child.restart_at and not self._signals:
                self._start(child)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals += 1
        self.log(f"got {signal.Signals(signum).name}; stopping the workers")

    def _forward_signals(self) -> None:
        """Each live worker process gets SIGTERM for the first signal, SIGQUIT after."""
        for child in self._alive():
            assert child.process is not None
            while child.signals_sent < self._signals:
                child.signals_sent += 1
                forward = signal.SIGTERM if child.signals_sent == 1 else signal.SIGQUIT
                try:
                    child.process.send_signal(forward)
                except ProcessLookupError:
                    break
