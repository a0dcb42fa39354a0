"""Checkpoint storage: safetensors weights, config.json, pickle-free resume state.

Layout under a run folder ``R``::

    R/checkpoints/index.json                 listed checkpoints, ``best``, ``last``, the fence token
    R/checkpoints/best, R/checkpoints/last   relative links to listed epoch folders
    R/checkpoints/epoch-<k>/model.safetensors
    R/checkpoints/epoch-<k>/config.json            Hugging Face's or timm's own, or Thaw's record
    R/checkpoints/epoch-<k>/thaw.json              Thaw's record where config.json is a library's
    R/checkpoints/epoch-<k>/training_state.safetensors
    R/checkpoints/epoch-<k>/meta.json        epoch, step, metrics, files (size, sha256)

A save stages its files in a hidden folder, then publishes them in one fenced step
(``commit.py``): a writer whose claim is no longer the newest makes nothing visible.
"""

from thaw.checkpoints.commit import publish, raise_fence
from thaw.checkpoints.errors import (
    CheckpointError,
    CheckpointNotFound,
    CorruptCheckpoint,
    FencedOut,
    InvalidCheckpointName,
)
from thaw.checkpoints.index import CheckpointInfo, FileInfo
from thaw.checkpoints.layout import (
    CONFIG_FILE,
    INDEX_FILE,
    META_FILE,
    MODEL_FILE,
    RECORD_FILE,
    TRAINING_STATE_FILE,
    checkpoint_name,
    checkpoints_dir,
    validate_name,
)
from thaw.checkpoints.resume_state import (
    load_training_state,
    save_training_state,
)
from thaw.checkpoints.rng import capture_rng_state, restore_rng_state
from thaw.checkpoints.store import (
    clean_incomplete,
    find_checkpoint,
    find_checkpoint_file,
    get_checkpoint,
    list_checkpoints,
    load_checkpoint_training_state,
    load_model_state,
    read_config,
    read_meta,
    save_checkpoint,
    verify_checkpoint,
)

__all__ = [
    "CONFIG_FILE",
    "INDEX_FILE",
    "META_FILE",
    "MODEL_FILE",
    "RECORD_FILE",
    "TRAINING_STATE_FILE",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointNotFound",
    "CorruptCheckpoint",
    "FencedOut",
    "FileInfo",
    "InvalidCheckpointName",
    "capture_rng_state",
    "checkpoint_name",
    "checkpoints_dir",
    "clean_incomplete",
    "find_checkpoint",
    "find_checkpoint_file",
    "get_checkpoint",
    "list_checkpoints",
    "load_checkpoint_training_state",
    "load_model_state",
    "load_training_state",
    "publish",
    "raise_fence",
    "read_config",
    "read_meta",
    "restore_rng_state",
    "save_checkpoint",
    "save_training_state",
    "validate_name",
    "verify_checkpoint",
]
