"""Which weight files of a local model folder may be loaded: safetensors, never pickle,
unless THAW_ALLOW_PICKLE_WEIGHTS lets ``.bin`` through torch's ``weights_only`` loader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from thaw.errors import ModelError

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def safetensors_weights(folder: Path, loc: Sequence[str | int], *, allow_pickle: bool) -> Path:
    """The folder's weights: ``model.safetensors`` (or its shard index); a folder with only
    ``pytorch_model.bin`` is refused unless ``allow_pickle``."""
    for name in SAFETENSORS:
        if (folder / name).is_file():
            return folder / name
    pickled = [name for name in PICKLED if (folder / name).is_file()]
    if pickled and allow_pickle:
        return folder / pickled[0]
    if pickled:
        raise ModelError(
            loc,
            f"{folder.name}/{pickled[0]} is a pickle file; Thaw loads model.safetensors only",
            "convert it to safetensors (load it and call save_pretrained(folder, "
            "safe_serialization=True) or safetensors.torch.save_file), or set "
            "THAW_ALLOW_PICKLE_WEIGHTS=true to load it with torch's weights_only loader",
        )
    raise ModelError(
        loc,
        f"model folder {folder.name!r} has no model.safetensors",
        "put the weights there as model.safetensors",
    )
