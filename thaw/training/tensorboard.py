"""TensorBoard event files in the run folder: train/loss and lr/group_<k> by optimizer
step, val/* by epoch, and a text marker at each thaw."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TensorBoardSink:
    name = "TensorBoard"

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._open = lambda: SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))
        self._writer: SummaryWriter | None = None

    @property
    def writer(self) -> Any:
        """Opened at the first scalar, so a run that fails before training leaves no folder."""
        if self._writer is None:
            self._writer = self._open()
        return self._writer

    def progress(self, progress: dict[str, Any]) -> None:
        if "loss" not in progress:
            return
        step = progress["step"]
        self.writer.add_scalar("train/loss", progress["loss"], step)
        for k, lr in enumerate(progress.get("lr", [])):
            self.writer.add_scalar(f"lr/group_{k}", lr, step)

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if key != "epoch" and _number(value):
                self.writer.add_scalar(f"val/{key.removeprefix('val_')}", value, epoch)

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        text = f"phase {phase} at step {step}: {len(thawed)} parameters thawed"
        if frozen:
            text += f", {len(frozen)} frozen"
        self.writer.add_text("thaw", text, step)
        self.writer.flush()

    def failure(self) -> str | None:
        return None

    def close(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
