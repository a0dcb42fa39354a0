"""Names and paths of checkpoints under a run folder.

``R/checkpoints/epoch-<k>/{model.safetensors,config.json,training_state.safetensors,meta.json}``
and ``R/checkpoints/index.json``. ``best`` and ``last`` are kept in the index and, on disk,
as relative symbolic links ``R/checkpoints/best`` and ``R/checkpoints/last`` to a listed folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from thaw.checkpoints.errors import CorruptCheckpoint, InvalidCheckpointName

CHECKPOINTS_DIR = "checkpoints"
INDEX_FILE = "index.json"
META_FILE = "meta.json"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Thaw's record when config.json is the model library's own (Hugging Face, timm).
RECORD_FILE = "thaw.json"
TRAINING_STATE_FILE = "training_state.safetensors"
STEP_DIR = "resume"
"""``R/resume``: the run's one step checkpoint (a mid-epoch resume point)."""

BEST = "best"
LAST = "last"
ALIASES = (BEST, LAST)

# ASCII digits only and no leading zeros, so every epoch has exactly one name.
_EPOCH_NAME = re.compile(r"epoch-(0|[1-9][0-9]{0,8})", re.ASCII)
_TEMP_NAME = re.compile(r"\.(epoch-[0-9]+|best|last)\.(tmp|old)-[0-9a-f]+", re.ASCII)
# The forms validate_name accepts, as the API's schema shows them.
NAME_PATTERN = rf"^({BEST}|{LAST}|{_EPOCH_NAME.pattern})$"
_NAME_HINT = "use 'best', 'last' or 'epoch-<k>' such as 'epoch-3'"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def index_path(run_dir: str | Path) -> Path:
    return checkpoints_dir(run_dir) / INDEX_FILE


def checkpoint_name(epoch: int) -> str:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
    name = f"epoch-{epoch}"
    if not _EPOCH_NAME.fullmatch(name):
        raise ValueError(f"epoch {epoch} is out of range")
    return name


def epoch_of(name: str) -> int | None:
    """The epoch of a canonical ``epoch-<k>`` name, else None."""
    match = _EPOCH_NAME.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def is_temp_name(name: str) -> bool:
    """A folder left by an interrupted save or replace."""
    return _TEMP_NAME.fullmatch(name) is not None


def validate_name(name: object) -> str:
    """Return ``name`` if it is ``best``, ``last`` or a canonical ``epoch-<k>``."""
    if isinstance(name, str) and (name in ALIASES or _EPOCH_NAME.fullmatch(name)):
        return name
    raise InvalidCheckpointName(f"invalid checkpoint name {name!r}", _NAME_HINT)


def step_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / STEP_DIR


def read_step_meta(run_dir: str | Path) -> dict[str, Any] | None:
    """The step checkpoint's meta.json, or None when the run has none."""
    path = step_dir(run_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CorruptCheckpoint(f"{path} is unreadable: {exc}") from exc
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), int) for k in ("step",)):
        raise CorruptCheckpoint(f"{path} is not a step checkpoint's meta")
    return meta
