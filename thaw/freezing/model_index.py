"""Names, types and groups of one model, computed once and shared by selectors and status."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from thaw.freezing.groups import LayerGroup, derive_groups

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm,)


@dataclass
class ModelIndex:
    model: nn.Module
    head: str
    params: dict[str, nn.Parameter]
    param_owner: dict[str, str]
    module_params: dict[str, list[str]]
    module_types: dict[str, str]
    groups: list[LayerGroup]
    param_group: dict[str, int]
    batchnorms: list[str] = field(default_factory=list)
    norm_modules: set[str] = field(default_factory=set)
    no_decay: set[str] = field(default_factory=set)
    adapters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """With method lora: each adapter-carrying layer and its adapter parameters' names."""

    def group_params(self, index: int) -> list[str]:
        return [n for n, g in self.param_group.items() if g == index]

    def owned_params(self, module: str) -> list[str]:
        """Parameters a module holds directly (not through children)."""
        return [n for n in self.module_params.get(module, []) if self.param_owner[n] == module]


def index_model(model: nn.Module, head: str) -> ModelIndex:
    params = dict(model.named_parameters())
    owner = {name: name.rpartition(".")[0] for name in params}
    module_params = modules_of(params)
    types: dict[str, str] = {}
    batchnorms: list[str] = []
    norms: set[str] = set()
    for name, module in model.named_modules():
        if not name:
            continue
        types[name] = type(module).__name__
        if isinstance(module, BATCHNORM_TYPES):
            batchnorms.append(name)
        if isinstance(module, NORM_TYPES) or "norm" in type(module).__name__.lower():
            norms.add(name)
    groups = derive_groups(model, head)
    prefix_to_group = {m: g.index for g in groups for m in g.modules}
    param_group = {name: _lookup(name, prefix_to_group) for name in params}
    return ModelIndex(
        model=model,
        head=head,
        params=params,
        param_owner=owner,
        module_params=module_params,
        module_types=types,
        groups=groups,
        param_group=param_group,
        batchnorms=batchnorms,
        norm_modules=norms,
        no_decay=_declared_no_decay(model, params),
    )


def modules_of(params: dict[str, nn.Parameter]) -> dict[str, list[str]]:
    """Every module path (each prefix of a parameter name) and the parameters under it."""
    module_params: dict[str, list[str]] = {}
    for name in params:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            module_params.setdefault(".".join(parts[:depth]), []).append(name)
    return module_params


def _declared_no_decay(model: nn.Module, params: dict[str, nn.Parameter]) -> set[str]:
    """Parameters the model itself exempts from weight decay (timm's ``no_weight_decay()``:
    position embeddings, class tokens), by name or by module prefix."""
    declared = getattr(model, "no_weight_decay", None)
    if not callable(declared):
        return set()
    try:
        names = set(declared())
    except (TypeError, NotImplementedError):
        return set()
    return {p for p in params if p in names or any(p.startswith(f"{n}.") for n in names)}


def _lookup(name: str, prefixes: dict[str, int]) -> int:
    probe = name
    while probe not in prefixes:
        probe = probe.rpartition(".")[0]
        if not probe:
            raise KeyError(f"parameter {name} is in no layer group")
    return prefixes[probe]
