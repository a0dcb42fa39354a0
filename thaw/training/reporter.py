"""Where a run reports to: the job store for the worker, a progress bar for the CLI."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    def progress(self, progress: dict[str, Any]) -> None: ...
    def metrics(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None: ...
    def layers(self, epoch: int, entry: dict[str, Any]) -> None: ...
    def checkpoint(self, info: dict[str, Any]) -> None: ...
    def log(self, level: str, message: str) -> None: ...
    def should_stop(self) -> bool: ...


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

    def log(self, level: str, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False
