"""Find and replace a classifier's output layer."""

from __future__ import annotations

from torch import nn

from thaw.errors import ModelError


def find_head(model: nn.Module, out_features: int | None = None) -> str:
    """The last Linear (or 1x1 Conv2d, as in SqueezeNet) that emits the class scores."""
    found = None
    for name, module in model.named_modules():
        width = _width(module)
        if width is not None and (out_features is None or width == out_features):
            found = name
    if found is None:
        raise ModelError(("base_model", "name"), "the model has no classification layer to replace")
    return found


def replace_head(model: nn.Module, path: str, num_classes: int) -> None:
    """Swap the head for a fresh layer with ``num_classes`` outputs, on the head's device."""
    old = model.get_submodule(path)
    if _width(old) == num_classes:
        return
    device = next(old.parameters()).device
    dtype = next(old.parameters()).dtype
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(
            old.in_features, num_classes, bias=old.bias is not None, device=device, dtype=dtype
        )
    else:
        assert isinstance(old, nn.Conv2d)
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1, device=device, dtype=dtype)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def _width(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
        return module.out_channels
    return None
