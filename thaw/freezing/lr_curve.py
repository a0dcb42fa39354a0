"""An LR scheduler that drives every param group, including groups added mid-run.

torch's schedulers capture ``base_lrs`` at construction, so a group added later
is never scheduled. Here each group keeps its own ``initial_lr`` and every step
sets ``lr = initial_lr * factor(step)`` for all groups present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


@dataclass(frozen=True)
class LRCurve:
    kind: str
    total_steps: int
    warmup_steps: int = 0
    step_size: int = 1
    gamma: float = 0.1

    def factor(self, step: int) -> float:
        """Multiplier of each group's initial lr for the step after ``step`` completed steps."""
        if self.kind == "onecycle":
            return self._onecycle(step)
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "step":
            return self.gamma ** ((step - self.warmup_steps) // self.step_size)
        return 1.0

    def _onecycle(self, step: int) -> float:
        rise = self.warmup_steps or max(1, int(0.3 * self.total_steps))
        low = 1.0 / ONECYCLE_DIV
        if step < rise:
            return low + (1.0 - low) * step / rise
        end = low / ONECYCLE_FINAL_DIV
        progress = min(1.0, (step - rise) / max(1, self.total_steps - rise))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


class GroupLRScheduler:
    def __init__(self, optimizer: Any, curve: LRCurve):
        self.optimizer = optimizer
        self.curve = curve
        self.last_step = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.sync()

    def step(self) -> None:
        self.last_step += 1
        self.sync()

    def sync(self) -> None:
        """Set every group's lr for the current step (call after adding a group)."""
        factor = self.curve.factor(self.last_step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def state_dict(self) -> dict[str, int]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.last_step = int(state["last_step"])
        self.sync()
