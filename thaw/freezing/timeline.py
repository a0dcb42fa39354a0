"""Build the deterministic timeline of phases from the freeze rules and the schedule.

A phase is a span of optimizer steps with one trainable set. Phase 0 starts
at step 0 and includes every event at epoch 1; each later instant at which an
event fires starts the next phase. Presets expand here into plain events (rotate
into at_step events).

``on_plateau`` events come after every fixed phase, one phase each, in the order
given: each is armed once the phase before it has begun, and starts when the
monitored metric stalls (``Timeline.trigger``) or at its ``at_epoch`` deadline.
Until then its ``start_step`` is the deadline, or the run's end (never).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from thaw.errors import SpecError, format_loc
from thaw.freezing.adapters import steer
from thaw.freezing.model_index import ModelIndex
from thaw.freezing.selectors import select
from thaw.freezing.trainable import TrainableMap, enforce_batchnorm_policy, initial_state
from thaw.settings import Settings
from thaw.spec import (
    FineTunePreset,
    FreezeSpec,
    GradualPreset,
    Plateau,
    RotatePreset,
    ScheduleEvent,
)


@dataclass(frozen=True)
class Event:
    """One schedule event at a global step, with where it came from in the spec."""

    step: int
    epoch: int | None
    unfreeze: tuple[str, ...]
    freeze: tuple[str, ...]
    lr: float | None
    lr_mult: float | None
    loc: tuple[str | int, ...]
    source: str
    on_plateau: Plateau | None = None
    active: tuple[int, ...] | None = None
    """For a rotate event: the layer groups that train from here on."""

    def describe(self) -> dict[str, object]:
        when = {"at_epoch": self.epoch} if self.epoch is not None else {"at_step": self.step}
        if self.on_plateau is not None:
            when = {"on_plateau": self.on_plateau.model_dump(), "at_epoch": self.epoch}
        out: dict[str, object] = {**when, "source": self.source}
        if self.active is not None:
            out["active_groups"] = list(self.active)
        if self.unfreeze:
            out["unfreeze"] = list(self.unfreeze)
        if self.freeze:
            out["freeze"] = list(self.freeze)
        if self.lr is not None:
            out["lr"] = self.lr
        if self.lr_mult is not None:
            out["lr_mult"] = self.lr_mult
        return out


@dataclass
class Phase:
    index: int
    start_step: int
    start_epoch: int
    trainable: TrainableMap
    events: list[Event] = field(default_factory=list)
    thawed: dict[str, Event] = field(default_factory=dict)
    frozen: list[str] = field(default_factory=list)
    on_plateau: Plateau | None = None
    deadline_step: int | None = None
    """A conditional phase's latest start (its event's at_epoch); None: no deadline."""

    @property
    def trainable_names(self) -> list[str]:
        return [n for n, t in self.trainable.items() if t]


@dataclass
class Timeline:
    phases: list[Phase]
    steps_per_epoch: int
    epochs: int
    warnings: list[str]
    _triggered: dict[int, int] = field(default_factory=dict)
    """Conditional phases a plateau started, with their start step."""

    def phase_at_step(self, step: int) -> Phase:
        """The phase in force for the optimizer step that follows ``step`` completed steps."""
        current = self.phases[0]
        for phase in self.phases:
            if phase.start_step <= step:
                current = phase
        return current

    def phase_at_epoch(self, epoch: int) -> Phase:
        return self.phase_at_step((epoch - 1) * self.steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def trigger(self, index: int, step: int) -> None:
        """Conditional phase ``index`` starts at ``step`` (its plateau was seen)."""
        phase = self.phases[index]
        phase.start_step = min(step, phase.start_step)
        phase.start_epoch = phase.start_step // self.steps_per_epoch + 1
        self._triggered[index] = phase.start_step
        self._settle()

    def triggered(self) -> dict[str, int]:
        """Conditional phases started by a plateau: ``{phase index: start step}``."""
        return {str(k): v for k, v in self._triggered.items()}

    def _settle(self) -> None:
        """Pending conditional phases start at their deadline (else never), not before the
        phase ahead of them."""
        previous = 0
        for phase in self.phases:
            if phase.on_plateau is not None and phase.index not in self._triggered:
                own = phase.deadline_step if phase.deadline_step is not None else self.total_steps
                phase.start_step = max(own, previous)
                phase.start_epoch = phase.start_step // self.steps_per_epoch + 1
            previous = phase.start_step


def expand_schedule(
    items: list, epochs: int, steps_per_epoch: int, index: ModelIndex, settings: Settings
) -> tuple[list[Event], list[Event]]:
    """Presets become events; explicit events are checked against the run's length.
    Returns the fixed events by step, and the on_plateau events in the order given."""
    events: list[Event] = []
    conditional: list[Event] = []
    total = epochs * steps_per_epoch
    group_count = len(index.groups)
    for i, item in enumerate(items):
        loc = ("schedule", i)
        if isinstance(item, ScheduleEvent) and item.on_plateau is not None:
            conditional.append(_plateau_event(item, loc, epochs, steps_per_epoch, total))
        elif isinstance(item, ScheduleEvent):
            events.append(_explicit(item, loc, epochs, steps_per_epoch, total))
        elif isinstance(item, RotatePreset):
            events.extend(_rotate(item, loc, index, total, settings))
        elif isinstance(item, GradualPreset):
            for k in range(group_count):
                epoch = 1 + k * item.every_epochs
                if epoch > epochs:
                    break
                events.append(_preset_event(f"group:{-(k + 1)}", epoch, steps_per_epoch, item, loc))
        elif isinstance(item, FineTunePreset):
            events.append(_preset_event("group:-1", 1, steps_per_epoch, item, loc))
            if item.freeze_epochs + 1 <= epochs:
                events.append(
                    _preset_event("group:0:", item.freeze_epochs + 1, steps_per_epoch, item, loc)
                )
    return sorted(events, key=lambda e: e.step), conditional


def _plateau_event(
    item: ScheduleEvent, loc: tuple, epochs: int, steps_per_epoch: int, total: int
) -> Event:
    step = total
    if item.at_epoch is not None:
        if item.at_epoch > epochs:
            raise SpecError(
                (*loc, "at_epoch"),
                f"at_epoch {item.at_epoch} is past the last epoch ({epochs})",
                f"use 2..{epochs} as the deadline or raise hyperparameters.epochs",
            )
        step = (item.at_epoch - 1) * steps_per_epoch
    return Event(
        step=step,
        epoch=item.at_epoch,
        unfreeze=tuple(item.unfreeze),
        freeze=tuple(item.freeze),
        lr=item.lr,
        lr_mult=item.lr_mult,
        loc=loc,
        source="on_plateau",
        on_plateau=item.on_plateau,
    )


def _rotate(
    item: RotatePreset, loc: tuple, index: ModelIndex, total: int, settings: Settings
) -> list[Event]:
    """One at_step event per interval of ``every_steps``: the seeded draw of ``active``
    groups out of the pool trains, the rest of the pool is frozen."""
    always_groups = {
        index.param_group[n]
        for s in item.always
        for n in select(index, s, (*loc, "always"), settings)
    }
    chosen = select(index, item.groups, (*loc, "groups"), settings)
    pool = sorted({index.param_group[n] for n in chosen} - always_groups)
    if item.active > len(pool):
        raise SpecError(
            (*loc, "active"),
            f"active is {item.active} but 'groups' leaves {len(pool)} layer group(s) to "
            "rotate (those in 'always' excluded)",
            f"use 1..{len(pool)}" if pool else "widen 'groups' or narrow 'always'",
        )
    intervals = -(-total // item.every_steps)
    limit = settings.max_rotate_intervals
    if intervals > limit:
        raise SpecError(
            (*loc, "every_steps"),
            f"every_steps {item.every_steps} makes {intervals} intervals over {total} steps; "
            f"at most {limit} (THAW_MAX_ROTATE_INTERVALS)",
            f"use every_steps of at least {-(-total // limit)}",
        )
    rng = random.Random(item.seed)
    events: list[Event] = []
    previous: set[int] = set()
    for step in range(0, total, item.every_steps):
        active = set(rng.sample(pool, item.active))
        if step == 0:
            unfreeze = [*item.always, *(f"group:{g}" for g in sorted(active))]
            freeze = [f"group:{g}" for g in pool if g not in active]
        else:
            unfreeze = [f"group:{g}" for g in sorted(active - previous)]
            freeze = [f"group:{g}" for g in sorted(previous - active)]
        previous = active
        if not unfreeze and not freeze:
            continue
        events.append(
            Event(
                step=step,
                epoch=None,
                unfreeze=tuple(unfreeze),
                freeze=tuple(freeze),
                lr=None,
                lr_mult=None,
                loc=loc,
                source="rotate",
                active=tuple(sorted(active)),
            )
        )
    return events


def _explicit(
    item: ScheduleEvent, loc: tuple, epochs: int, steps_per_epoch: int, total: int
) -> Event:
    if item.at_epoch is not None:
        if item.at_epoch > epochs:
            raise SpecError(
                (*loc, "at_epoch"),
                f"at_epoch {item.at_epoch} is past the last epoch ({epochs})",
                f"use 1..{epochs} or raise hyperparameters.epochs",
            )
        step, epoch = (item.at_epoch - 1) * steps_per_epoch, item.at_epoch
    else:
        assert item.at_step is not None
        if item.at_step >= total:
            raise SpecError(
                (*loc, "at_step"),
                f"at_step {item.at_step} is at or past the last step ({total} steps in all)",
                f"use 1..{total - 1}",
            )
        step, epoch = item.at_step, None
    return Event(
        step=step,
        epoch=epoch,
        unfreeze=tuple(item.unfreeze),
        freeze=tuple(item.freeze),
        lr=item.lr,
        lr_mult=item.lr_mult,
        loc=loc,
        source="event",
    )


def _preset_event(
    selector: str, epoch: int, steps_per_epoch: int, item: GradualPreset | FineTunePreset, loc
) -> Event:
    return Event(
        step=(epoch - 1) * steps_per_epoch,
        epoch=epoch,
        unfreeze=(selector,),
        freeze=(),
        lr=None,
        lr_mult=item.lr_mult,
        loc=loc,
        source=item.preset,
    )


def build_timeline(
    index: ModelIndex,
    freeze: FreezeSpec,
    schedule: list,
    settings: Settings,
    *,
    epochs: int,
    steps_per_epoch: int,
) -> Timeline:
    """Every phase's full trainable map, in order; errors point at the spec field to fix."""
    events, conditional = expand_schedule(schedule, epochs, steps_per_epoch, index, settings)
    warnings: list[str] = []
    state = initial_state(index, freeze, settings)
    phases = [Phase(0, 0, 1, dict(state))]
    for event in events:
        phase = phases[-1]
        if event.step > phase.start_step:
            phase = Phase(len(phases), event.step, event.step // steps_per_epoch + 1, dict(state))
            phases.append(phase)
        _apply(index, freeze, event, phase, warnings, settings)
        state = phase.trainable
    for event in conditional:
        _check_deadline(event, phases[-1])
        phase = Phase(len(phases), event.step, event.step // steps_per_epoch + 1, dict(state))
        phase.on_plateau = event.on_plateau
        phase.deadline_step = event.step if event.epoch is not None else None
        phases.append(phase)
        _apply(index, freeze, event, phase, warnings, settings)
        state = phase.trainable
    for phase in phases:
        if not any(phase.trainable.values()):
            raise _nothing_trainable(phase, freeze)
    timeline = Timeline(phases, steps_per_epoch, epochs, warnings)
    timeline._settle()
    return timeline


def _check_deadline(event: Event, before: Phase) -> None:
    """A deadline must fall after the start (or the deadline) of the phase that arms it."""
    if event.epoch is None or (before.on_plateau is not None and before.deadline_step is None):
        return
    limit = before.start_epoch
    if event.epoch <= limit:
        raise SpecError(
            (*event.loc, "at_epoch"),
            f"the on_plateau deadline at_epoch {event.epoch} is not after epoch {limit}, "
            "where the phase before it begins",
            f"use an at_epoch above {limit}, or leave it out",
        )


def _apply(
    index: ModelIndex,
    freeze: FreezeSpec,
    event: Event,
    phase: Phase,
    warnings: list[str],
    settings: Settings,
) -> None:
    to_unfreeze = _select_all(index, event.unfreeze, (*event.loc, "unfreeze"), event, settings)
    to_freeze = _select_all(index, event.freeze, (*event.loc, "freeze"), event, settings)
    both = to_unfreeze & to_freeze
    if both:
        raise SpecError(
            event.loc,
            f"one event both freezes and unfreezes {sorted(both)[0]!r}"
            + (f" and {len(both) - 1} more" if len(both) > 1 else ""),
            "split it into two events or narrow the selectors",
        )
    before = dict(phase.trainable)
    for name in to_unfreeze:
        phase.trainable[name] = True
    for name in to_freeze:
        phase.trainable[name] = False
    enforce_batchnorm_policy(index, phase.trainable, freeze.batchnorm)
    changed = [n for n in index.params if phase.trainable[n] != before[n]]
    phase.events.append(event)
    for name in changed:
        if phase.trainable[name]:
            phase.thawed[name] = event
            if name in phase.frozen:
                phase.frozen.remove(name)
        else:
            phase.thawed.pop(name, None)
            phase.frozen.append(name)
    if not changed:
        warnings.append(
            f"{_where(event)} changes nothing: every parameter it names is already "
            "in the state it asks for"
        )


def _select_all(
    index: ModelIndex, selectors, loc: tuple, event: Event, settings: Settings
) -> set[str]:
    names: set[str] = set()
    for j, selector in enumerate(selectors):
        where = (*loc, j) if event.source == "event" else loc[:-1]
        names.update(steer(index, select(index, selector, where, settings)))
    return names


def _where(event: Event) -> str:
    when = f"epoch {event.epoch}" if event.epoch is not None else f"step {event.step}"
    return f"{format_loc(event.loc)} ({event.source}, {when})"


def _nothing_trainable(phase: Phase, freeze: FreezeSpec) -> SpecError:
    if phase.index == 0:
        return SpecError(
            ("freeze",),
            "nothing is trainable at the start of training",
            f"freeze.default is {freeze.default!r}: add a rule with trainable true, "
            "an unfreeze event at epoch 1, or a preset",
        )
    last = phase.events[-1]
    return SpecError(
        last.loc,
        f"nothing is trainable from step {phase.start_step} (phase {phase.index})",
        "leave at least one parameter trainable in every phase",
    )
