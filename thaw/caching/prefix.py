"""Split a model into a frozen input-side prefix of layer groups and the rest.

The split is derived, not tabled per model: one forward pass (on the ``meta`` device for
a plan) records the calls of the group modules and of their parameter-free siblings
(``relu``, ``maxpool`` ...). Groups ``0..k-1`` form a prefix when those calls are a
straight chain: each takes the previous one's output, each runs once. Then

- ``prefix(inputs)`` is the model's own forward stopped after the chain's last call;
- ``rest(features)`` is the model's forward with the chain's first call answering
  ``features`` and the others passing their input through.

The trainer also checks one real batch (``full == rest(prefix)``) before it trusts a split.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from thaw.freezing.model_index import ModelIndex
from thaw.freezing.trainable import batchnorm_modes, stochastic_modules


@dataclass(frozen=True)
class Call:
    """One recorded module call: does it take the model's input, or the output of the call
    recorded just before it; the shape of its output."""

    name: str
    takes_input: bool
    takes_previous: bool
    output_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Chain:
    """The recorded calls of one traced forward pass, in call order."""

    calls: tuple[Call, ...]
    image: bool
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """A derived split: the prefix is groups ``0..groups-1``, run as ``modules`` in order."""

    groups: int
    modules: tuple[str, ...]


class _Stop(Exception):
    def __init__(self, output: torch.Tensor):
        self.output = output


def example_inputs(modality: str, image_size: int, device: torch.device | str) -> Any:
    """A one-sample input to trace with (text without a mask: masks do data checks)."""
    if modality == "image":
        return torch.zeros(1, 3, image_size, image_size, device=device)
    return {"input_ids": torch.zeros(1, 8, dtype=torch.long, device=device)}


def call_model(model: nn.Module, inputs: Any) -> Any:
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


def trace(index: ModelIndex, inputs: Any) -> Chain:
    """Record the calls of group modules and their siblings in one no-grad forward pass."""
    model = index.model
    names = _traced_names(index)
    modules = dict(model.named_modules())
    calls: list[list[Any]] = []
    counts: dict[str, int] = {}
    handles = []

    def pre(name: str):
        def hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            first = args[0] if args else next(iter(kwargs.values()), None)
            counts[name] = counts.get(name, 0) + 1
            calls.append([name, first, None])
            slots[name] = len(calls) - 1

        return hook

    def post(name: str):
        def hook(_m: nn.Module, _args: tuple, _kwargs: dict, output: Any) -> None:
            calls[slots[name]][2] = output

        return hook

    slots: dict[str, int] = {}
    for name in names:
        module = modules[name]
        handles.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
        handles.append(module.register_forward_hook(post(name), with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            call_model(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    image = not isinstance(inputs, dict)
    recorded = []
    for i, (name, first, output) in enumerate(calls):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        previous = i > 0 and first is calls[i - 1][2]
        recorded.append(Call(name, image and first is inputs, previous, shape))
    return Chain(tuple(recorded), image, counts)


def _traced_names(index: ModelIndex) -> list[str]:
    modules = dict(index.model.named_modules())
    group_modules = [m for g in index.groups for m in g.modules if m in modules]
    ancestors = {m.rsplit(".", i)[0] for m in group_modules for i in range(1, m.count(".") + 1)}
    names: list[str] = []
    for name in group_modules:
        parent = name.rpartition(".")[0]
        owner = modules[parent] if parent else index.model
        for child, _ in owner.named_children():
            full = f"{parent}.{child}" if parent else child
            if full not in ancestors and full not in names:
                names.append(full)
    return names


def find_split(index: ModelIndex, chain: Chain, groups: int) -> Split | str:
    """The split after ``groups`` leading groups, or why the forward is not a chain there."""
    modules = dict(index.model.named_modules())
    inside = [m for g in index.groups[:groups] for m in g.modules]
    later = {m for g in index.groups[groups:] for m in g.modules}
    missing = [m for m in inside if m not in modules]
    where = index.groups[groups - 1].name
    if missing:
        return f"{missing[0]} is a parameter, not a module, so no cut can be made at {where}"
    positions = [i for i, c in enumerate(chain.calls) if c.name in inside]
    if len(positions) != len(inside) or any(chain.counts.get(m, 0) != 1 for m in inside):
        return f"the forward does not call each module up to {where} exactly once"
    span = chain.calls[: max(positions) + 1]
    if any(c.name in later for c in span):
        return f"the forward runs later groups before {where} ends"
    if any(chain.counts.get(c.name, 0) != 1 for c in span):
        return f"a module before {where} runs more than once"
    if chain.image and not span[0].takes_input:
        return f"{span[0].name} does not take the model's input"
    for prev, call in itertools.pairwise(span):
        if not call.takes_previous:
            return f"{call.name} does not take {prev.name}'s output, so the forward is no chain"
    return Split(groups, tuple(c.name for c in span))


def stochastic_module(
    index: ModelIndex, names: tuple[str, ...], modes: Mapping[str, bool]
) -> str | None:
    """The first module under ``names`` that draws random numbers in this phase's train mode
    (``modes``: the pinned modules' modes, see ``module_modes``)."""
    for unit in stochastic_modules(index):
        inside = any(unit.name == n or unit.name.startswith(f"{n}.") for n in names)
        if inside and modes.get(unit.name, True):
            return f"{unit.name} ({unit.type}, p={unit.p:g})"
    return None


def frozen_groups(index: ModelIndex, trainable: Mapping[str, bool], policy: str) -> int:
    """How many leading groups hold only frozen parameters and eval-mode BatchNorm layers."""
    modes = batchnorm_modes(index, trainable, policy)
    count = 0
    for group in index.groups[:-1]:
        params = index.group_params(group.index)
        bns = [b for b in index.batchnorms if _inside(b, group.modules)]
        if any(trainable[n] for n in params) or any(modes[b] for b in bns):
            break
        count += 1
    return count


def _inside(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(f"{m}.") for m in modules)


# Running a split ------------------------------------------------------------------------


class _Inject(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        assert self.value is not None
        return self.value


class _Pass(nn.Module):
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return args[0] if args else next(iter(kwargs.values()))


def run_prefix(model: nn.Module, split: Split, inputs: Any) -> torch.Tensor:
    """The model's own forward up to the end of the prefix, without autograd."""
    last = model.get_submodule(split.modules[-1])

    def stop(_m: nn.Module, _args: tuple, output: Any) -> None:
        raise _Stop(output)

    handle = last.register_forward_hook(stop)
    try:
        with torch.no_grad():
            call_model(model, inputs)
    except _Stop as stopped:
        return stopped.output
    finally:
        handle.remove()
    raise RuntimeError(f"the forward pass never reached {split.modules[-1]}")


def run_capturing(model: nn.Module, split: Split, inputs: Any) -> tuple[Any, torch.Tensor]:
    """The model's output and a copy of what the end of the prefix gave on the way (the
    copy, since later modules may change it in place), in one pass without autograd."""
    last = model.get_submodule(split.modules[-1])
    seen: list[torch.Tensor] = []

    def keep(_m: nn.Module, _args: tuple, output: Any) -> None:
        seen.append(output.clone() if isinstance(output, torch.Tensor) else output)

    handle = last.register_forward_hook(keep)
    try:
        with torch.no_grad():
            output = call_model(model, inputs)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise RuntimeError(f"the forward pass ran {split.modules[-1]} {len(seen)} times")
    return output, seen[0]


def run_rest(model: nn.Module, split: Split, features: torch.Tensor, stand_in: Any) -> Any:
    """The model's forward from ``features`` on; ``stand_in`` takes the input's place."""
    with swapped(model, split) as inject:
        inject.value = features
        try:
            return call_model(model, stand_in)
        finally:
            inject.value = None


@contextmanager
def swapped(model: nn.Module, split: Split) -> Iterator[_Inject]:
    inject = _Inject()
    saved: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for i, name in enumerate(split.modules):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            saved.append((parent, child, parent._modules[child]))  # type: ignore[arg-type]
            parent._modules[child] = inject if i == 0 else _Pass()
        yield inject
    finally:
        for parent, child, module in saved:
            parent._modules[child] = module
