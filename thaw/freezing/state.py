"""The freeze state: which parameters train and which BatchNorm layers run in eval mode."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from thaw.freezing.model_index import ModelIndex
from thaw.freezing.selectors import select
from thaw.spec import FreezeSpec

TrainableMap = dict[str, bool]


def initial_state(index: ModelIndex, spec: FreezeSpec) -> TrainableMap:
    """``default`` for every parameter, then each rule in order (the last match wins)."""
    state = dict.fromkeys(index.params, spec.default == "trainable")
    for i, rule in enumerate(spec.rules):
        for name in select(index, rule.match, ("freeze", "rules", i, "match")):
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


class ModeKeeper:
    """Pins BatchNorm layers to the mode the freeze state asks for, through any ``train()``.

    ``model.train()`` (or a submodule's) recurses into every child and would put frozen
    BatchNorm layers back into train mode, so their running statistics would drift.
    Each BatchNorm gets a subclass of its own class whose ``train()`` honours a flag
    stored on the module itself, so copies of the model keep the behaviour too.
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
        return super().train(mode and self._thaw_may_train)  # type: ignore[misc]


_PINNED: dict[type, type] = {}


def _pinned_class(cls: type) -> type:
    """``cls`` with a pinnable ``train()``, keeping its name so ``type:`` selectors and
    the layer status still show ``BatchNorm2d``."""
    if cls not in _PINNED:
        _PINNED[cls] = type(
            cls.__name__,
            (_ModePinned, cls),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
        )
    return _PINNED[cls]
