"""LoRA as a freeze method: adapter targets from selectors, PEFT's layers put into the model,
and the index and trainable steering that make adapters parts the freeze engine moves.

The adapted model keeps the base model's names: a target ``X`` shows its base weights as
``X.weight`` (PEFT holds them at ``X.base_layer.weight``) and its adapter as ``X.lora_A.weight``
and ``X.lora_B.weight`` (PEFT: ``X.lora_A.default.weight``), all owned by ``X``, in ``X``'s
layer group. Base weights of a target never train; a rule or event that reaches a target
enables or disables its adapter instead.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from thaw.checkpoints.adapter import ADAPTER_NAME, LORA_PARTS, PEFT_PREFIX, AdapterExport
from thaw.errors import SpecError
from thaw.freezing.model_index import ModelIndex, modules_of
from thaw.freezing.selectors import select

if TYPE_CHECKING:
    from peft import LoraConfig

    from thaw.settings import Settings
    from thaw.spec import AdapterSpec, JobSpec

ADAPTABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class Adapters:
    """The adapters of one job: where they sit and how they are shaped."""

    targets: tuple[str, ...]
    r: int
    alpha: float
    dropout: float

    def lora_config(self, modules_to_save: Iterable[str] = ()) -> LoraConfig:
        from peft import LoraConfig

        saved = sorted(modules_to_save)
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.targets),
            modules_to_save=saved or None,
        )


def adapter_targets(index: ModelIndex, spec: AdapterSpec, settings: Settings) -> Adapters:
    """The Linear and Conv2d layers the target selectors pick, in model order; a selector
    that picks none of them is an error naming the types it picked."""
    modules = dict(index.model.named_modules())
    chosen: dict[str, None] = {}
    for i, selector in enumerate(spec.targets):
        loc = ("freeze", "adapter", "targets", i)
        owners = dict.fromkeys(index.param_owner[n] for n in select(index, selector, loc, settings))
        fit = [
            m for m in owners if m and type(modules[m]) in ADAPTABLE and not _in_head(m, index.head)
        ]
        if not fit:
            raise _no_adaptable(loc, selector, owners, index)
        chosen.update(dict.fromkeys(fit))
    order = {name: i for i, name in enumerate(modules)}
    targets = tuple(sorted(chosen, key=order.__getitem__))
    return Adapters(targets, spec.r, spec.alpha, spec.dropout)


def _in_head(module: str, head: str) -> bool:
    return module == head or module.startswith(f"{head}.")


def _no_adaptable(
    loc: tuple[str | int, ...], selector: str, owners: Iterable[str], index: ModelIndex
) -> SpecError:
    owners = list(owners)
    if owners and all(_in_head(m, index.head) for m in owners):
        return SpecError(
            loc,
            f"{selector!r} selects the head ({index.head}), which trains in full",
            "leave the head out of targets; select Linear or Conv2d layers of the base model",
        )
    types = sorted({index.module_types.get(m, "Parameter") for m in owners if m})
    return SpecError(
        loc,
        f"{selector!r} selects no Linear or Conv2d layer, only {', '.join(types) or 'parameters'}",
        "LoRA adapts Linear and Conv2d layers; GET /v1/models/layers lists each layer's type",
    )


def add_adapters(model: nn.Module, index: ModelIndex, adapters: Adapters) -> ModelIndex:
    """Put PEFT's LoRA layers into ``model`` (in place) and index it under base names."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(adapters.lora_config(), model, adapter_name=ADAPTER_NAME)
    return adapted_index(index, model, adapters.targets)


def adapted_copy(model: nn.Module) -> nn.Module:
    """A model shared by callers (the meta-model cache) is copied before adapters go in."""
    return copy.deepcopy(model)


def base_name(name: str, targets: frozenset[str] | set[str]) -> str:
    """The name a parameter or buffer of an adapted model goes by in Thaw: base weights
    under their base model's name, adapters as ``X.lora_A.weight``."""
    module, _, leaf = name.rpartition(".")
    if module.endswith(".base_layer") and module[: -len(".base_layer")] in targets:
        return f"{module[: -len('.base_layer')]}.{leaf}"
    for part in LORA_PARTS:
        marker = f".{part}.{ADAPTER_NAME}"
        if module.endswith(marker) and module[: -len(marker)] in targets:
            return f"{module[: -len(marker)]}.{part}.{leaf}"
    return name


def adapted_index(base: ModelIndex, model: nn.Module, targets: Iterable[str]) -> ModelIndex:
    """``base`` (the model before adapters) extended with each target's adapter parameters;
    groups, module types and norms stay the base model's."""
    wanted = frozenset(targets)
    params = {base_name(n, wanted): p for n, p in model.named_parameters()}
    owner: dict[str, str] = {}
    adapters: dict[str, list[str]] = {}
    group: dict[str, int] = {}
    for name in params:
        if name in base.param_owner:
            owner[name] = base.param_owner[name]
            group[name] = base.param_group[name]
            continue
        target = name.rpartition(".")[0].rpartition(".")[0]
        owner[name] = target
        group[name] = base.param_group[base.module_params[target][0]]
        adapters.setdefault(target, []).append(name)
    return ModelIndex(
        model=model,
        head=base.head,
        params=params,
        param_owner=owner,
        module_params=modules_of(params),
        module_types=dict(base.module_types),
        groups=base.groups,
        param_group=group,
        batchnorms=list(base.batchnorms),
        norm_modules=set(base.norm_modules),
        no_decay=set(base.no_decay),
        adapters={t: tuple(adapters[t]) for t in base.module_types if t in adapters},
    )


def adapter_params(index: ModelIndex) -> set[str]:
    return {p for names in index.adapters.values() for p in names}


def steer(index: ModelIndex, names: Iterable[str]) -> set[str]:
    """What one selector acts on: with adapters, the adapters of the targets it reaches;
    a selector that reaches no target acts on the base parameters it names."""
    names = set(names)
    if not index.adapters:
        return names
    reached = [
        t for t, own in index.adapters.items() if any(n in names for n in index.module_params[t])
    ]
    if reached:
        return {p for t in reached for p in index.adapters[t]}
    return names


def lora_start(index: ModelIndex, default: str) -> dict[str, bool]:
    """Before rules: adapters as ``freeze.default`` says, base parameters frozen, the head
    trainable."""
    state = dict.fromkeys(index.params, False)
    for name in adapter_params(index):
        state[name] = default == "trainable"
    for name in index.module_params.get(index.head, [index.head]):
        if name in state:
            state[name] = True
    return state


def adapter_fields(
    index: ModelIndex, layer: str, owned: list[str], trainable: dict[str, bool] | Any
) -> dict[str, Any]:
    """A status row's ``adapter`` (rank, parameters, whether it trains; null for a layer with
    none) and ``base_trains``; nothing for jobs without adapters."""
    if not index.adapters:
        return {}
    names = index.adapters.get(layer, ())
    base = [p for p in owned if p not in names]
    out: dict[str, Any] = {"base_trains": any(trainable[p] for p in base)}
    if not names:
        out["adapter"] = None
        return out
    first = index.params[names[0]]
    out["adapter"] = {
        "r": int(first.shape[0]),
        "params": sum(index.params[p].numel() for p in names),
        "trainable": all(trainable[p] for p in names),
    }
    return out


def saved_modules(index: ModelIndex, phases: Iterable[Mapping[str, bool]]) -> list[str]:
    """Base modules that train in some phase (each phase's trainable map): saved whole in
    the adapter (PEFT's ``modules_to_save``), so the adapter holds every tensor the run
    changes."""
    adapters = adapter_params(index)
    owners: dict[str, None] = {}
    for trainable in phases:
        for name, on in trainable.items():
            if on and name not in adapters:
                owners[index.param_owner[name]] = None
    for module in owners:
        if not module:
            raise SpecError(
                ("freeze", "rules"),
                "a parameter of the model itself trains, which a PEFT adapter cannot save",
                "keep model-level parameters frozen with method 'lora'",
            )
        inner = next((t for t in index.adapters if t.startswith(f"{module}.")), None)
        if inner is not None:
            raise SpecError(
                ("freeze", "rules"),
                f"{module} trains in full and holds the adapter-carrying layer {inner}",
                "train the modules beside the adapters, not one that contains them",
            )
    return sorted(owners)


def adapter_record(spec: JobSpec, adapters: Adapters | None) -> dict[str, Any]:
    """What a checkpoint's record says of its adapter: its shape and the base model it goes
    on, so ``thaw.load_model`` can rebuild that base and put the adapter on it."""
    if adapters is None:
        return {}
    return {
        "adapter": {
            "r": adapters.r,
            "alpha": adapters.alpha,
            "targets": list(adapters.targets),
            "base_model": spec.base_model.model_dump(mode="json"),
        }
    }


def export_adapter(model: nn.Module, adapters: Adapters, saved: Iterable[str]) -> AdapterExport:
    """The adapter of ``model`` with the base modules in ``saved`` (whole), PEFT's way."""
    saved = list(saved)
    tensors: dict[str, torch.Tensor] = {}
    for target in adapters.targets:
        layer = model.get_submodule(target)
        for part in LORA_PARTS:
            weight = getattr(layer, part)[ADAPTER_NAME].weight
            tensors[f"{PEFT_PREFIX}{target}.{part}.weight"] = weight.detach()
    for module in saved:
        for key, value in model.get_submodule(module).state_dict().items():
            tensors[f"{PEFT_PREFIX}{module}.{key}"] = value.detach()
    return AdapterExport(adapters.lora_config(saved), tensors)


def base_state(state: Mapping[str, torch.Tensor], adapters: Adapters) -> dict[str, torch.Tensor]:
    """An adapted model's state without its adapters, under the base model's names."""
    targets = frozenset(adapters.targets)
    skip = {f"{t}.{part}.{ADAPTER_NAME}" for t in targets for part in LORA_PARTS}
    return {
        base_name(key, targets): value
        for key, value in state.items()
        if key.rpartition(".")[0] not in skip
    }


def merged_state(model: nn.Module, adapters: Adapters) -> dict[str, torch.Tensor]:
    """The model's state under base names with each adapter merged into its layer's weight."""
    out = base_state(model.state_dict(), adapters)
    with torch.no_grad():
        for target in adapters.targets:
            layer = model.get_submodule(target)
            weight = layer.base_layer.weight
            out[f"{target}.weight"] = weight + layer.get_delta_weight(ADAPTER_NAME).to(weight.dtype)
    return out
