"""Where a run reports to: the job store for the worker, a progress bar for the CLI."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from thaw.checkpoints.errors import FencedOut

StopReason = Literal["cancel", "lost", "preempt"]


class LeaseLost(FencedOut):
    """The run's claim on its job was taken over by another; it stops without another
    step or write."""

    status = 409
    code = "lease_lost"

    def __init__(self, job_id: str, token: int):
        super().__init__(f"job {job_id}: claim {token} no longer holds the job")


class Reporter(Protocol):
    def progress(self, progress: dict[str, Any]) -> None: ...
    def metrics(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None: ...
    def layers(self, epoch: int, entry: dict[str, Any]) -> None: ...
    def checkpoint(self, info: dict[str, Any]) -> None: ...
    def plateau(self, info: dict[str, Any]) -> None:
        """A conditional phase starts because the monitored metric stalled."""
        ...

    def stopped_early(self, info: dict[str, Any]) -> None:
        """The run stops after ``info["epoch"]``; ``info["reason"]`` says why."""
        ...

    def log(self, level: str, message: str) -> None: ...
    def should_stop(self) -> bool: ...
    def stop_reason(self) -> StopReason | None:
        """Why the run should stop before its next step: ``cancel`` (stop, keep the last
        checkpoint), ``preempt`` (write a step checkpoint, then stop), ``lost`` (stop at
        once, write nothing), or None."""
        ...

    def fence(self) -> int | None:
        """Called before each checkpoint commit: raises LeaseLost when the run no longer
        holds its job; returns the fencing token to stamp the checkpoint with."""
        ...


class NullReporter:
    def progress(self, progress: dict[str, Any]) -> None:
        pass

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        pass

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        pass

    def checkpoint(self, info: dict[str, Any]) -> None:
        pass

    def plateau(self, info: dict[str, Any]) -> None:
        self.log("info", f"phase {info['phase']} begins with epoch {info['epoch']} (plateau)")

    def stopped_early(self, info: dict[str, Any]) -> None:
        self.log("info", f"stopped early after epoch {info['epoch']}: {info['reason']}")

    def log(self, level: str, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def stop_reason(self) -> StopReason | None:
        return "cancel" if self.should_stop() else None

    def fence(self) -> int | None:
        return None
