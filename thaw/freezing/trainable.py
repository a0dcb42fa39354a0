"""The freeze state: which parameters train, and which modules run in eval mode (BatchNorm
layers by ``freeze.batchnorm``, dropout and stochastic depth by ``freeze.dropout``)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from thaw.freezing.adapters import lora_start, steer
from thaw.freezing.model_index import ModelIndex
from thaw.freezing.selectors import select
from thaw.settings import Settings
from thaw.spec import FreezeSpec

TrainableMap = dict[str, bool]


def initial_state(index: ModelIndex, spec: FreezeSpec, settings: Settings) -> TrainableMap:
    """``default`` for every parameter, then each rule in order (the last match wins).
    With adapters, see ``thaw.freezing.adapters``: the default is the adapters' and rules
    reaching a target act on its adapter."""
    if index.adapters:
        state = lora_start(index, spec.default)
    else:
        state = dict.fromkeys(index.params, spec.default == "trainable")
    for i, rule in enumerate(spec.rules):
        loc = ("freeze", "rules", i, "match")
        for name in steer(index, select(index, rule.match, loc, settings)):
            state[name] = rule.trainable
    return enforce_batchnorm_policy(index, state, spec.batchnorm)


def enforce_batchnorm_policy(index: ModelIndex, state: TrainableMap, policy: str) -> TrainableMap:
    """``frozen`` pins BatchNorm affine parameters frozen, ``trainable`` pins them trainable."""
    if policy == "follow":
        return state
    pinned = policy == "trainable"
    for bn in index.batchnorms:
        for name in index.owned_params(bn):
            state[name] = pinned
    return state


def batchnorm_modes(index: ModelIndex, state: Mapping[str, bool], policy: str) -> dict[str, bool]:
    """For each BatchNorm, whether it runs in train mode (its running statistics update)."""
    modes: dict[str, bool] = {}
    for bn in index.batchnorms:
        if policy != "follow":
            modes[bn] = policy == "trainable"
            continue
        owned = index.owned_params(bn) or _nearest_params(index, bn)
        modes[bn] = any(state[name] for name in owned) if owned else True
    return modes


def _nearest_params(index: ModelIndex, module: str) -> list[str]:
    probe = module
    while probe:
        probe = probe.rpartition(".")[0]
        if probe in index.module_params:
            return index.module_params[probe]
    return []


def module_modes(
    index: ModelIndex, state: Mapping[str, bool], batchnorm: str, dropout: str
) -> dict[str, bool]:
    """For each pinned module, whether it runs in train mode.

    BatchNorm layers follow ``batchnorm`` (see ``batchnorm_modes``). With ``dropout``
    "follow", a stochastic module (dropout, stochastic depth, attention dropout) inside a
    layer group whose parameters are all frozen runs in eval mode, and so does the module
    that owns it, whose forward may read its own ``training`` flag (Hugging Face and timm
    attention pass ``dropout_p`` only when training). "active" pins none of them.
    """
    modes = batchnorm_modes(index, state, batchnorm)
    if dropout == "active":
        return modes
    training_groups = {index.param_group[name] for name, on in state.items() if on}
    owners: dict[str, bool] = {}
    for unit in stochastic_modules(index):
        if unit.group is None:
            continue
        training = unit.group in training_groups
        modes[unit.name] = training
        if unit.owner is not None and unit.owner not in modes:
            owners[unit.owner] = owners.get(unit.owner, False) or training
    for name, training in owners.items():
        modes.setdefault(name, training)
    return modes


@dataclass(frozen=True)
class Stochastic:
    """A module that draws random numbers in train mode: its drop rate, its layer group (None
    outside every group) and its parent module when that lies in the same group."""

    name: str
    type: str
    p: float
    group: int | None
    owner: str | None


STOCHASTIC_TYPE_NAMES = ("StochasticDepth", "DropPath")


def drop_rate(module: nn.Module) -> float:
    """The probability with which ``module`` drops in train mode; 0.0 if it never does."""
    if isinstance(module, nn.MultiheadAttention):
        p = module.dropout
    elif isinstance(module, nn.modules.dropout._DropoutNd) or any(
        key in type(module).__name__ for key in STOCHASTIC_TYPE_NAMES
    ):
        p = getattr(module, "p", getattr(module, "drop_prob", None))
    else:
        return 0.0
    return float(p) if isinstance(p, int | float) and p > 0 else 0.0


_STOCHASTIC: weakref.WeakKeyDictionary[nn.Module, list[Stochastic]] = weakref.WeakKeyDictionary()


def stochastic_modules(index: ModelIndex) -> list[Stochastic]:
    """The model's stochastic modules with a drop rate above zero, in module order."""
    cached = _STOCHASTIC.get(index.model)
    if cached is not None:
        return cached
    batchnorms = set(index.batchnorms)
    found = []
    for name, module in index.model.named_modules():
        p = drop_rate(module)
        if not name or p == 0.0:
            continue
        group = _group_of(index, name)
        parent = name.rpartition(".")[0]
        same = group is not None and parent and _group_of(index, parent) == group
        owner = parent if same and parent not in batchnorms else None
        found.append(Stochastic(name, type(module).__name__, p, group, owner))
    _STOCHASTIC[index.model] = found
    return found


def _group_of(index: ModelIndex, module: str) -> int | None:
    for group in index.groups:
        if any(module == m or module.startswith(f"{m}.") for m in group.modules):
            return group.index
    return None


class ModeKeeper:
    """Pins modules (BatchNorm, dropout and their owners) to the mode the freeze state asks
    for, through any ``train()``.

    ``model.train()`` (or a submodule's) recurses into every child and would put frozen
    BatchNorm layers back into train mode, so their running statistics would drift, and
    frozen dropout back to drawing random numbers. Each pinned module gets a subclass of
    its own class whose ``train()`` honours a flag stored on the module itself, so copies
    of the model keep the behaviour too. A pinned module sets only its own flag: its
    children get the mode asked for and their own pins.
    """

    def __init__(self, model: nn.Module, modes: Callable[[], Mapping[str, bool]]):
        self._model = model
        self._modes = modes
        self._modules = dict(model.named_modules())
        self.apply()

    def apply(self) -> None:
        for name, training in self._modes().items():
            module = self._modules[name]
            if not isinstance(module, _ModePinned):
                module.__class__ = _pinned_class(type(module))
            module._thaw_may_train = training
            module.train(self._model.training)


class _ModePinned:
    _thaw_may_train = True

    def train(self, mode: bool = True):  # type: ignore[no-untyped-def]
        super().train(mode)  # type: ignore[misc]
        self.training = mode and self._thaw_may_train
        return self


_PINNED: dict[type, type] = {}


def _pinned_class(cls: type) -> type:
    """``cls`` with a pinnable ``train()``, keeping its name so ``type:`` selectors and
    the layer status still show ``BatchNorm2d`` or ``Dropout``."""
    if cls not in _PINNED:
        _PINNED[cls] = type(
            cls.__name__,
            (_ModePinned, cls),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
        )
    return _PINNED[cls]
