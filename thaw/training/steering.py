"""Decisions a run takes from its monitored metric after each epoch: stop early, or enter
the next phase of the schedule when the metric stalls (on_plateau). Their state is part of
the resume state, so a resumed run decides exactly as an uninterrupted one."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from thaw.freezing.timeline import Timeline
from thaw.spec import Checkpointing


@dataclass
class Patience:
    """Epochs since the monitored value last improved by more than ``min_delta``."""

    mode: str
    patience: int
    min_delta: float
    best: float | None = None
    wait: int = 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; True once ``patience`` epochs passed without gain."""
        if self.best is None or self._better(value):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return self.wait >= self.patience

    def _better(self, value: float) -> bool:
        assert self.best is not None
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


@dataclass(frozen=True)
class Decision:
    stop: dict[str, Any] | None = None
    """``{"epoch", "reason"}`` when the run stops after this epoch."""
    plateau_phase: int | None = None
    """The conditional phase that starts with the next epoch."""


class Steering:
    def __init__(self, checkpointing: Checkpointing, timeline: Timeline):
        self.monitor = checkpointing.monitor
        self.mode = checkpointing.mode or "min"
        self.timeline = timeline
        rule = checkpointing.early_stopping
        self.warmup = rule.warmup_epochs if rule is not None else 0
        self.early = (
            Patience(self.mode, rule.patience, rule.min_delta) if rule is not None else None
        )
        self.plateau: Patience | None = None
        self.armed: int | None = None
        self.stopped: dict[str, Any] | None = None

    def after_epoch(self, epoch: int, phase: int, metrics: dict[str, float]) -> Decision:
        """Judge epoch ``epoch`` (trained in ``phase``) by its metrics."""
        value = metrics.get(self.monitor)
        if value is None or not math.isfinite(value):
            return Decision()
        exhausted = self.early is not None and epoch > self.warmup and self.early.update(value)
        thaw = self._plateau(epoch, phase, value)
        if thaw is not None:
            # A new trainable set gets the whole patience before the run may stop.
            if self.early is not None:
                self.early.wait = 0
            return Decision(plateau_phase=thaw)
        if exhausted:
            assert self.early is not None
            best = self.early.best
            self.stopped = {
                "epoch": epoch,
                "reason": f"{self.monitor} did not improve by more than "
                f"{self.early.min_delta:g} for {self.early.patience} epoch(s) "
                f"(best {best:.6g})",
                "monitor": self.monitor,
                "best": best,
            }
            return Decision(stop=self.stopped)
        return Decision()

    def _plateau(self, epoch: int, phase: int, value: float) -> int | None:
        nxt = phase + 1
        if nxt >= len(self.timeline.phases) or self.timeline.phases[nxt].on_plateau is None:
            self.plateau, self.armed = None, None
            return None
        if self.armed != nxt:
            rule = self.timeline.phases[nxt].on_plateau
            assert rule is not None
            self.plateau = Patience(self.mode, rule.patience, rule.min_delta)
            self.armed = nxt
        assert self.plateau is not None
        if not self.plateau.update(value) or epoch >= self.timeline.epochs:
            return None
        self.timeline.trigger(nxt, epoch * self.timeline.steps_per_epoch)
        self.plateau, self.armed = None, None
        return nxt

    def state_dict(self) -> dict[str, Any]:
        return {
            "early": asdict(self.early) if self.early is not None else None,
            "plateau": asdict(self.plateau) if self.plateau is not None else None,
            "armed": self.armed,
            "stopped": self.stopped,
            "started": self.timeline.triggered(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.early is not None and state.get("early") is not None:
            self.early = Patience(**state["early"])
        self.plateau = Patience(**state["plateau"]) if state.get("plateau") else None
        self.armed = state.get("armed")
        self.stopped = state.get("stopped")
        for index, step in (state.get("started") or {}).items():
            self.timeline.trigger(int(index), int(step))
