"""``thaw train``'s reporter: a progress bar and one line per epoch on stderr."""

from __future__ import annotations

import sys
from typing import Any

from thaw.training.reporter import NullReporter


class ConsoleReporter(NullReporter):
    def __init__(self) -> None:
        self._tqdm: Any = None

    @property
    def _bar(self) -> Any:
        """Created on first use, so a spec that fails validation prints only its error."""
        if self._tqdm is None:
            from tqdm import tqdm

            self._tqdm = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True)
        return self._tqdm

    def progress(self, progress: dict[str, Any]) -> None:
        bar = self._bar
        bar.total = progress["total_steps"]
        bar.n = progress["step"]
        bar.set_description(f"epoch {progress['epoch']}/{progress['epochs']}")
        shown = {"phase": progress["phase"], "samples/s": progress["samples_per_s"]}
        if "loss" in progress:
            shown["loss"] = progress["loss"]
        if "cache_fill" in progress:
            fill = progress["cache_fill"]
            shown["caching"] = f"{fill['done']}/{fill['total']}"
        bar.set_postfix(shown, refresh=True)

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        text = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch")
        self._write(f"epoch {epoch}: {text}")

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        self._write(f"phase {phase} at step {step}: {len(thawed)} thawed, {len(frozen)} frozen")

    def checkpoint(self, info: dict[str, Any]) -> None:
        self._write(f"checkpoint {info['name']}")

    def log(self, level: str, message: str) -> None:
        self._write(f"{level}: {message}")

    def _write(self, line: str) -> None:
        self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
