"""The freeze engine on a live model: requires_grad, module modes (BatchNorm, dropout),
optimizer groups, LR.

One object owns the model's freeze state across the run. The trainer calls
``advance(step)`` before each optimizer step (it applies any phase due by then),
``before_step()`` after backward, and ``after_step()`` after ``optimizer.step()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from thaw.freezing.lr_curve import GroupLRScheduler, LRCurve
from thaw.freezing.model_index import ModelIndex
from thaw.freezing.param_options import ParamOptions
from thaw.freezing.timeline import Timeline
from thaw.freezing.trainable import ModeKeeper, module_modes
from thaw.spec import FreezeSpec, Hyperparameters

if TYPE_CHECKING:
    from thaw.freezing.resolve import Resolved

FROZEN_GROUP = "frozen"


@dataclass(frozen=True)
class PhaseChange:
    phase: int
    step: int
    thawed: list[str]
    frozen: list[str]


class FreezeEngine:
    def __init__(
        self,
        index: ModelIndex,
        timeline: Timeline,
        freeze: FreezeSpec,
        hp: Hyperparameters,
        *,
        fused: bool = False,
        options: list[dict[str, ParamOptions | None]],
    ):
        self.index = index
        self.model: nn.Module = index.model
        self.timeline = timeline
        self.method = freeze.method
        self.policy = freeze.batchnorm
        self.dropout = freeze.dropout
        self.hp = hp
        self.options = options
        self.phase = 0
        self.trainable = dict(timeline.phases[0].trainable)
        self._set_requires_grad()
        self.optimizer = _make_optimizer(hp, self._initial_groups(), fused)
        self.scheduler = GroupLRScheduler(self.optimizer, _curve(hp, timeline))
        self.modes = ModeKeeper(self.model, self.module_modes)
        self._frozen_group = next(
            (g for g in self.optimizer.param_groups if g["name"] == FROZEN_GROUP), None
        )

    @classmethod
    def from_resolved(cls, resolved: Resolved, *, fused: bool = False) -> FreezeEngine:
        """The engine of a resolved spec, with the per-phase options resolve() computed."""
        spec = resolved.spec
        return cls(
            resolved.index,
            resolved.timeline,
            spec.freeze,
            spec.hyperparameters,
            fused=fused,
            options=resolved.options,
        )

    def module_modes(self) -> dict[str, bool]:
        """Train (True) or eval per pinned module, re-applied after every ``train()``."""
        return module_modes(self.index, self.trainable, self.policy, self.dropout)

    # Trainer hooks -------------------------------------------------------------------------

    def due(self, step: int) -> bool:
        """Whether a phase starts at or before ``step`` completed optimizer steps."""
        nxt = self.phase + 1
        return nxt < len(self.timeline.phases) and self.timeline.phases[nxt].start_step <= step

    def advance(self, step: int) -> list[PhaseChange]:
        """Apply every phase that starts at or before ``step`` completed optimizer steps."""
        changes = []
        while self.due(step):
            changes.append(self._enter(self.phase + 1))
        return changes

    def before_step(self) -> None:
        """Frozen parameters under ``zero_lr`` got gradients; drop them so nothing moves them."""
        if self._frozen_group is not None:
            for param in self._frozen_group["params"]:
                param.grad = None

    def after_step(self) -> None:
        self.scheduler.step()

    # Resume ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay the phases up to the saved one, then load optimizer and scheduler state.

        Groups must exist, in the same order and with the same parameters, before the
        optimizer state is loaded; replaying the timeline rebuilds exactly that.
        """
        target = int(state["phase"])
        while self.phase < target:
            self._enter(self.phase + 1)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    # Internals ------------------------------------------------------------------------------

    def _initial_groups(self) -> list[dict[str, Any]]:
        options = self.options[0]
        groups = _bucket(
            self.index, [n for n, s in options.items() if s is not None], options, "base"
        )
        if self.method == "zero_lr":
            frozen = [self.index.params[n] for n, s in options.items() if s is None]
            groups.append(_group(FROZEN_GROUP, frozen, ParamOptions(0.0, 0.0)))
        return groups

    def _enter(self, phase_index: int) -> PhaseChange:
        phase = self.timeline.phases[phase_index]
        options = self.options[phase_index]
        thawed = [n for n in self.index.params if phase.trainable[n] and n in phase.thawed]
        frozen = [n for n in self.index.params if not phase.trainable[n] and self.trainable[n]]
        moving = {id(self.index.params[n]) for n in thawed + frozen}
        for group in self.optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in moving]
        for name in thawed + frozen:
            param = self.index.params[name]
            param.grad = None
            self.optimizer.state.pop(param, None)
        if self._frozen_group is not None:
            self._frozen_group["params"].extend(self.index.params[n] for n in frozen)
        for group in _bucket(self.index, thawed, options, f"phase{phase_index}"):
            group["initial_lr"] = group["lr"]
            self.optimizer.add_param_group(group)
        self.trainable = dict(phase.trainable)
        self.phase = phase_index
        self._set_requires_grad()
        self.scheduler.sync()
        self.modes.apply()
        return PhaseChange(phase_index, phase.start_step, thawed, frozen)

    def _set_requires_grad(self) -> None:
        for name, param in self.index.params.items():
            param.requires_grad_(self.method == "zero_lr" or self.trainable[name])


def _bucket(
    index: ModelIndex, names: list[str], options: dict[str, ParamOptions | None], origin: str
) -> list[dict[str, Any]]:
    """Group parameters by (lr, weight decay), in model order."""
    buckets: dict[ParamOptions, list[nn.Parameter]] = {}
    for name in names:
        opts = options[name]
        assert opts is not None
        buckets.setdefault(opts, []).append(index.params[name])
    many = len(buckets) > 1
    return [
        _group(f"{origin}/lr={s.lr:g}/wd={s.weight_decay:g}" if many else origin, params, s)
        for s, params in buckets.items()
    ]


def _group(name: str, params: list[nn.Parameter], opts: ParamOptions) -> dict[str, Any]:
    return {
        "name": name,
        "params": params,
        "lr": opts.lr,
        "initial_lr": opts.lr,
        "weight_decay": opts.weight_decay,
    }


def _make_optimizer(
    hp: Hyperparameters, groups: list[dict[str, Any]], fused: bool
) -> torch.optim.Optimizer:
    extra: dict[str, Any] = {"fused": True} if fused else {}
    if hp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, **extra)
    return torch.optim.AdamW(groups, lr=hp.lr, **extra)


def _curve(hp: Hyperparameters, timeline: Timeline) -> LRCurve:
    return LRCurve(
        kind=hp.lr_scheduler,
        total_steps=timeline.epochs * timeline.steps_per_epoch,
        warmup_steps=hp.warmup_steps,
        step_size=hp.step_size_epochs * timeline.steps_per_epoch,
        gamma=hp.gamma,
    )
