"""What a worker publishes with each heartbeat: who it is, its device, the job it runs
and how fast, read by ``GET /v1/workers``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from thaw.cpus import cpu_share


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Node:
    """This process's Celery node name (set when the node starts) and start time."""

    name: str | None = None
    started_at: str = field(default_factory=_now_iso)


node = Node()


class Activity:
    """The running job and its speed; the job runner updates it, the heartbeat reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job: dict[str, str] | None = None
        self._jobs_done = 0
        self._samples_per_s: float | None = None
        self._step_time_s: float | None = None
        self._last: tuple[float, int] | None = None

    @contextlib.contextmanager
    def running(self, job_id: str, tenant: str) -> Iterator[None]:
        with self._lock:
            self._job = {"id": job_id, "tenant": tenant}
            self._samples_per_s = self._step_time_s = None
            self._last = None
        try:
            yield
        finally:
            with self._lock:
                self._job = None
                self._jobs_done += 1

    def observe(self, reporter: Any) -> Any:
        """``reporter`` with its progress reports also feeding this activity."""
        return _Observed(reporter, self)

    def progress(self, progress: dict[str, Any]) -> None:
        now, step = time.monotonic(), int(progress.get("step") or 0)
        with self._lock:
            rate = progress.get("samples_per_s")
            self._samples_per_s = float(rate) if rate is not None else None
            if self._last is not None and step > self._last[1]:
                self._step_time_s = (now - self._last[0]) / (step - self._last[1])
            if self._last is None or step != self._last[1]:
                self._last = (now, step)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "job": dict(self._job) if self._job else None,
                "jobs_done": self._jobs_done,
                "samples_per_s": self._samples_per_s,
                "step_time_s": self._step_time_s,
            }


class _Observed:
    def __init__(self, inner: Any, activity: Activity):
        self._inner = inner
        self._activity = activity

    def progress(self, progress: dict[str, Any]) -> None:
        self._activity.progress(progress)
        self._inner.progress(progress)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


activity = Activity()


@lru_cache(maxsize=1)
def describe_device() -> dict[str, Any]:
    """The device this worker trains on (the first visible GPU, or the CPU), the CPUs it may
    use and its torch threads."""
    import torch

    cpus = {
        "cpus": round(cpu_share().usable, 2),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {
            "type": "cuda",
            "name": props.name,
            "total_memory": int(props.total_memory),
            "capability": f"{props.major}.{props.minor}",
            **cpus,
        }
    return {"type": "cpu", "name": "cpu", "cores": os.cpu_count(), **cpus}


def device_memory() -> dict[str, int | None]:
    """Bytes in use now: CUDA allocated and reserved on a GPU, the process RSS on the CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        with contextlib.suppress(RuntimeError):
            return {
                "allocated": int(torch.cuda.memory_allocated()),
                "reserved": int(torch.cuda.memory_reserved()),
            }
    try:
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = None
    return {"rss": rss}


def _device_or_error() -> dict[str, Any]:
    """A device that cannot be described must not stop the heartbeat itself."""
    try:
        return describe_device()
    except Exception as exc:
        return {"type": "unknown", "name": f"{type(exc).__name__}: {exc}"[:200]}


def heartbeat_info() -> dict[str, Any]:
    import torch

    pin = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {
        "name": node.name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "gpu": pin if pin else None,
        "device": _device_or_error(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "started_at": node.started_at,
        "heartbeat_at": _now_iso(),
        "memory": device_memory(),
        **activity.snapshot(),
    }
