"""Initialize a model from a local safetensors file with a strict key check."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from thaw.errors import ModelError

_LOC = ("base_model", "weights_file")


def check_weights_file(model: nn.Module, path: Path, head: str) -> list[str]:
    """Compare the file's header with the model; returns the head keys that will be re-initialized.

    Reads only the header, so it is cheap enough to run at submit time.
    """
    from safetensors import safe_open

    if not path.is_file():
        raise ModelError(
            _LOC, f"weights file {path.name!r} not found", "upload it to THAW_MODELS_DIR"
        )
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:
        raise ModelError(_LOC, f"{path.name!r} is not a safetensors file: {exc}") from exc
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (first: {', '.join(unexpected[:5])})")
        raise ModelError(
            _LOC,
            f"weights file {path.name!r} does not fit the model: " + "; ".join(parts),
            "save the file from the same architecture with model.state_dict()",
        )
    reinit = []
    for key, shape in expected.items():
        if found[key] == shape:
            continue
        if key.startswith(head + "."):
            reinit.append(key)
            continue
        raise ModelError(
            _LOC,
            f"weights file {path.name!r}: {key} has shape {list(found[key])}, "
            f"the model expects {list(shape)}",
            "save the file from the same architecture",
        )
    return reinit


def load_weights_file(model: nn.Module, path: Path, head: str) -> list[str]:
    """Load the file into ``model``; a head of another width keeps its fresh initialization."""
    from safetensors.torch import load_file

    reinit = check_weights_file(model, path, head)
    state = load_file(str(path))
    for key in reinit:
        del state[key]
    model.load_state_dict(state, strict=not reinit)
    return reinit
