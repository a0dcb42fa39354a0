"""A reporter that also feeds sinks (TensorBoard, integrations): a failing sink becomes a
warning event and is dropped; training and the primary reporter never notice."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training.reporter import Reporter, StopReason

log = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    def progress(self, progress: dict[str, Any]) -> None: ...
    def metrics(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None: ...
    def failure(self) -> str | None:
        """Why the sink stopped working (a sink that sends in the background), else None."""
        ...

    def close(self, status: str) -> None: ...


class ObservedReporter:
    def __init__(self, primary: Reporter, sinks: list[Sink]):
        self.primary = primary
        self.sinks = list(sinks)

    def _each(self, method: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
                failure = sink.failure()
            except Exception as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if failure is not None:
                self.drop(sink, failure)

    def drop(self, sink: Sink, why: str) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
        log.warning("%s stopped: %s", sink.name, why)
        self.primary.log("warning", f"{sink.name} stopped ({why[:300]}); training goes on")

    def progress(self, progress: dict[str, Any]) -> None:
        self.primary.progress(progress)
        self._each("progress", progress)

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.primary.metrics(epoch, metrics)
        self._each("metrics", epoch, metrics)

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        self.primary.phase(phase, step, thawed, frozen)
        self._each("phase", phase, step, thawed, frozen)

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        self.primary.layers(epoch, entry)

    def checkpoint(self, info: dict[str, Any]) -> None:
        self.primary.checkpoint(info)

    def plateau(self, info: dict[str, Any]) -> None:
        self.primary.plateau(info)

    def stopped_early(self, info: dict[str, Any]) -> None:
        self.primary.stopped_early(info)

    def log(self, level: str, message: str) -> None:
        self.primary.log(level, message)

    def should_stop(self) -> bool:
        return self.primary.should_stop()

    def stop_reason(self) -> StopReason | None:
        return self.primary.stop_reason()

    def fence(self) -> int | None:
        return self.primary.fence()

    def close(self, status: str) -> None:
        """Let every sink finish; ``status`` is how the run ended (``succeeded``,
        ``cancelled``, ``preempted``, ``lost`` or ``failed``)."""
        for sink in list(self.sinks):
            try:
                sink.close(status)
                failure = sink.failure()
            except Exception as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if failure is not None and status != "lost":
                self.drop(sink, failure)
        self.sinks.clear()


def observed(
    primary: Reporter,
    spec: JobSpec,
    run_dir: Path,
    settings: Settings,
    tenant: str | None = None,
) -> ObservedReporter:
    """``primary`` plus the run's TensorBoard files and the spec's integrations; a sink
    that cannot start is a warning, as one that fails later."""
    # mlflow and tensorboard load only for the runs that report to them.
    from thaw.integrations.mlflow import MlflowSink
    from thaw.training.tensorboard import TensorBoardSink

    reporter = ObservedReporter(primary, [])
    starters: list[tuple[str, Any]] = [("TensorBoard", lambda: TensorBoardSink(run_dir))]
    for i, integration in enumerate(spec.integrations):
        starters.append(
            (
                f"integration {i} (mlflow)",
                lambda i=i, integration=integration: MlflowSink(
                    integration, i, spec.name, run_dir, settings, tenant
                ),
            )
        )
    for name, start in starters:
        try:
            reporter.sinks.append(start())
        except Exception as exc:
            log.warning("%s not started: %s", name, exc)
            primary.log("warning", f"{name} not started ({type(exc).__name__}: {exc})")
    return reporter
