"""torchvision classification builders."""

from __future__ import annotations

import difflib
from functools import lru_cache

from torch import nn

from thaw.errors import ModelError

_NO_AUX = {"googlenet", "inception_v3"}
_NAME_LOC = ("base_model", "name")


@lru_cache(maxsize=1)
def builder_names() -> tuple[str, ...]:
    import torchvision.models as tvm

    return tuple(sorted(tvm.list_models(module=tvm)))


def check_name(name: str) -> None:
    names = builder_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        raise ModelError(
            _NAME_LOC,
            f"unknown torchvision model {name!r}",
            f"closest: {', '.join(close)}" if close else "GET /v1/models lists the builders",
        )


def resolve_weights(name: str, weights: str | None):
    """The weights enum member named ``weights`` (``DEFAULT``, ``IMAGENET1K_V1``) or None."""
    if weights is None:
        return None
    import torchvision.models as tvm

    enum = tvm.get_model_weights(name)
    members = list(enum.__members__)
    if weights not in members:
        raise ModelError(
            ("base_model", "weights"),
            f"{name} has no weights {weights!r}",
            f"choose one of: {', '.join(members)}, or null",
        )
    return enum[weights]


def build(name: str, weights: str | None, *, pretrained: bool) -> nn.Module:
    """The builder's model at its native width; weights are fetched only if ``pretrained``."""
    import torchvision.models as tvm

    check_name(name)
    member = resolve_weights(name, weights)
    kwargs: dict[str, object] = {}
    if name in _NO_AUX:
        kwargs.update(aux_logits=False, init_weights=False)
    return tvm.get_model(name, weights=member if pretrained else None, **kwargs)


def is_convolutional(model: nn.Module) -> bool:
    """More than one spatial convolution: a conv net, not a transformer's patch embedding."""
    spatial = (m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    return sum(1 for _ in zip(spatial, range(2), strict=False)) > 1
