"""Layer groups: a model's blocks in order from input to output, derived for any model.

The rule: start from the model's children; while the largest non-head unit (by
number of parameter tensors, so one big embedding table does not outweigh a stack
of blocks) is a container with no sibling of its own class, open it up in place
(this walks through wrappers such as ``bert``, ``features``, ``encoder`` and
``layers``, and stops at a run of repeated blocks such as ResNet's
``layer1..layer4``). Leading single layers merge into ``stem``; single layers
between the last block and the head join the head's group.

Two sources say more than the rule can: a timm model's own ``group_matcher`` (coarse)
decides its groups, and a Hugging Face image classifier keeps its final norm as a group
of its own (embeddings, encoder layers or stages, final norm, classifier).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class LayerGroup:
    index: int
    name: str
    modules: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "name": self.name, "modules": list(self.modules)}


@dataclass
class _Unit:
    name: str
    module: nn.Module | None
    params: int
    tensors: int = 1
    is_block: bool = field(default=False)


def derive_groups(model: nn.Module, head: str) -> list[LayerGroup]:
    """Ordered groups covering every parameter of ``model`` exactly once."""
    matched = _timm_groups(model, head)
    if matched is not None:
        return matched
    units = _children(model, "")
    head_root = head.split(".")[0]
    while True:
        candidates = [u for u in units if u.name != head_root and u.module is not None]
        if not candidates:
            break
        largest = max(candidates, key=lambda u: (u.tensors, u.params))
        kinds = Counter(type(u.module).__name__ for u in candidates)
        if not largest.is_block or kinds[type(largest.module).__name__] > 1:
            break
        inner = _open(largest)
        if len(inner) < 2:
            break
        at = units.index(largest)
        units[at : at + 1] = inner
    return _merge(units, head_root, split_tail=_is_hf_image(model))


def _is_hf_image(model: nn.Module) -> bool:
    return type(model).__module__.startswith("transformers.") and (
        getattr(model, "main_input_name", None) == "pixel_values"
    )


def _timm_groups(model: nn.Module, head: str) -> list[LayerGroup] | None:
    """Groups from timm's own ``group_matcher(coarse=True)``, None for other models."""
    matcher = getattr(model, "group_matcher", None)
    if not type(model).__module__.startswith("timm.") or not callable(matcher):
        return None
    from timm.models import group_parameters

    by_id = group_parameters(model, matcher(coarse=True))
    params = [names for _, names in sorted(by_id.items()) if names]
    if not params:
        return None
    covering = _covering_modules(model, params)
    head_root = head.split(".")[0]
    groups = []
    for i, modules in enumerate(covering):
        if len(modules) == 1:
            name = modules[0]
        elif any(m == head or m.startswith(head_root) for m in modules):
            name = head_root
        elif i == 0:
            name = "stem"
        else:
            name = _common_prefix(modules) or modules[0]
        groups.append(LayerGroup(i, name, tuple(modules)))
    return groups


def _covering_modules(model: nn.Module, groups: list[list[str]]) -> list[list[str]]:
    """Per group of parameter names, the fewest module paths (or parameter names) that hold
    exactly those parameters, in model order."""
    group_of = {name: i for i, names in enumerate(groups) for name in names}
    under: dict[str, set[int]] = {}
    for name, i in group_of.items():
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            under.setdefault(".".join(parts[:depth]), set()).add(i)
    out: list[list[str]] = [[] for _ in groups]
    for name, _ in model.named_parameters():
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            if len(under[prefix]) == 1:
                modules = out[group_of[name]]
                if prefix not in modules:
                    modules.append(prefix)
                break
    return out


def _common_prefix(names: list[str]) -> str:
    split = [n.split(".") for n in names]
    common = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common)


def _open(unit: _Unit) -> list[_Unit]:
    """The unit's parameter-holding children, looking through single-child wrappers."""
    inner = [unit]
    while len(inner) == 1 and inner[0].is_block and inner[0].module is not None:
        inner = _children(inner[0].module, inner[0].name)
    return inner


def _children(module: nn.Module, prefix: str) -> list[_Unit]:
    units: list[_Unit] = []
    for name, param in module.named_parameters(recurse=False):
        units.append(_Unit(_join(prefix, name), None, param.numel()))
    for name, child in module.named_children():
        tensors = list(child.parameters())
        if not tensors:
            continue
        count = sum(p.numel() for p in tensors)
        is_block = any(True for c in child.children() if any(True for _ in c.parameters()))
        units.append(_Unit(_join(prefix, name), child, count, len(tensors), is_block))
    return units


def _merge(units: list[_Unit], head_root: str, *, split_tail: bool = False) -> list[LayerGroup]:
    blocks = [i for i, u in enumerate(units) if u.is_block and u.name != head_root]
    first = blocks[0] if blocks else 0
    last = blocks[-1] if blocks else len(units) - 1
    spans: list[tuple[str, list[str]]] = []
    if first > 0:
        stem = [u.name for u in units[:first]]
        spans.append(("stem" if len(stem) > 1 else stem[0], stem))
    for unit in units[first : last + 1]:
        spans.append((unit.name, [unit.name]))
    tail = [u.name for u in units[last + 1 :]]
    if split_tail:
        spans.extend((name, [name]) for name in tail if name != head_root)
        tail = [name for name in tail if name == head_root]
    if tail:
        name = head_root if head_root in tail else tail[-1]
        spans.append((name, tail))
    return [LayerGroup(i, name, tuple(mods)) for i, (name, mods) in enumerate(spans)]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
