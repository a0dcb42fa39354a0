"""Save, list and resolve the checkpoints of one run folder.

One writer per run (the worker holding the job's lease) calls :func:`save_checkpoint`;
any number of readers may list and resolve at the same time. A save writes a hidden
temp folder (staged), then publishes it: renames it into place and rewrites ``index.json``
under the run's fence (``thaw.checkpoints.commit``), so readers see either the old set of
checkpoints or the new one, never a partial checkpoint nor one of a stale holder.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from thaw.atomic import atomic_path, atomic_write_json, fsync_dir, remove_tree
from thaw.checkpoints.adapter import ADAPTER_DIR, AdapterExport, write_adapter
from thaw.checkpoints.commit import check_fence, publish
from thaw.checkpoints.errors import CheckpointNotFound, CorruptCheckpoint, InvalidCheckpointName
from thaw.checkpoints.index import (
    CheckpointInfo,
    Entry,
    FileInfo,
    Index,
    checkpoint_info,
    choose_best,
    index_checkpoints,
    read_index,
)
from thaw.checkpoints.layout import (
    BEST,
    CONFIG_FILE,
    INDEX_FILE,
    LAST,
    META_FILE,
    MODEL_FILE,
    RECORD_FILE,
    TRAINING_STATE_FILE,
    checkpoint_name,
    checkpoints_dir,
    epoch_of,
    is_temp_name,
    validate_name,
)
from thaw.checkpoints.remote import StoreRun, publish_to_store
from thaw.checkpoints.resume_state import load_training_state, save_training_state
from thaw.checkpoints.tensor_file import save_tensors
from thaw.checkpoints.tensors import tensor_bytes
from thaw.disk_space import disk_full, is_disk_full, require_free
from thaw.hashing import sha256_file

MODES = ("min", "max")
META_FORMAT = "thaw.checkpoint"
META_VERSION = 1


def save_checkpoint(
    run_dir: str | Path,
    *,
    epoch: int,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    training_state: Any,
    metrics: Mapping[str, Any],
    monitor: str = "val_loss",
    mode: str = "min",
    keep_last: int | None,
    library_config: Mapping[str, Any] | None = None,
    fence: Callable[[], int | None] | None = None,
    reserve_bytes: int = 0,
    adapter: AdapterExport | None = None,
    remote: StoreRun | None = None,
) -> CheckpointInfo:
    """Write checkpoint ``epoch-<epoch>``, make it ``last``, update ``best`` and prune.

    ``config`` is Thaw's rebuild record. With ``library_config`` (the model library's own
    config), that one is ``config.json`` and the record goes to ``thaw.json``.

    ``keep_last`` newest checkpoints are kept (None keeps all), and the best one is
    never pruned. Saving an epoch that already exists replaces it. ``fence`` is called
    before the run folder is touched and again by the publish, under the commit lock; it raises when
    the caller no longer holds the run and returns its fencing token (kept in meta.json),
    which the publish compares with the run's fence (see ``thaw.checkpoints.commit``).
    StorageFull when the files would leave less than ``reserve_bytes`` free. With
    ``adapter``, the folder also holds ``adapter/`` in PEFT's layout. With ``remote``, the
    published checkpoint then goes to the artifact store under the same fence
    (``thaw.checkpoints.remote``).
    """
    token = fence() if fence is not None else None
    name = checkpoint_name(epoch)
    if mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if keep_last is not None and (isinstance(keep_last, bool) or keep_last < 1):
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    check_fence(run_dir, read_index(run_dir), token)
    clean_incomplete(run_dir)
    clean_metrics = _json_metrics(metrics)
    needed = tensor_bytes(model_state) + tensor_bytes(training_state)
    needed += tensor_bytes(adapter.tensors) if adapter is not None else 0
    require_free(root, needed, reserve_bytes, f"checkpoint {name}")

    tmp = root / f".{name}.tmp-{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        entry = _write_checkpoint_folder(
            tmp,
            name,
            epoch,
            step,
            model_state,
            config,
            training_state,
            clean_metrics,
            library_config,
            token,
            adapter,
        )
    except BaseException as exc:
        remove_tree(tmp)
        if is_disk_full(exc):
            raise disk_full(root, f"checkpoint {name}", exc, reserve_bytes) from exc
        if isinstance(exc, OSError):  # a newer claim may have cleared this staged folder
            check_fence(run_dir, read_index(run_dir), token)
        raise

    def add(index: Index) -> Index:
        return add_entry(index, entry, monitor, mode, keep_last)

    new_index = publish(run_dir, token, {root / name: tmp}, add, confirm=fence)
    if remote is not None:
        publish_to_store(remote.store, remote.prefix, token, root / name, add, confirm=fence)
    return checkpoint_info(root, entry, new_index)


def add_entry(index: Index, entry: Entry, monitor: str, mode: str, keep_last: int | None) -> Index:
    """``index`` with ``entry`` as ``last`` (replacing one of its name), ``best`` chosen
    again, and all but the ``keep_last`` newest and the best one dropped."""
    entries = [*(e for e in index.entries if e.name != entry.name), entry]
    best = choose_best(entries, monitor, mode)
    recent = entries if keep_last is None else entries[-keep_last:]
    keep = {e.name for e in recent} | {best}
    return Index(
        entries=[e for e in entries if e.name in keep],
        best=best,
        last=entry.name,
        monitor=monitor,
        mode=mode,
    )


def list_checkpoints(run_dir: str | Path) -> list[CheckpointInfo]:
    """Listed checkpoints in save order, oldest first, with ``best`` and ``last`` flags."""
    return index_checkpoints(read_index(run_dir), checkpoints_dir(run_dir))


def get_checkpoint(run_dir: str | Path, name: str) -> CheckpointInfo:
    """One checkpoint by ``best``, ``last`` or ``epoch-<k>``."""
    index = read_index(run_dir)
    target = _listed_name(index, validate_name(name))
    entry = index.get(target)
    assert entry is not None
    return checkpoint_info(checkpoints_dir(run_dir), entry, index)


def find_checkpoint(run_dir: str | Path, name: str) -> Path:
    """The folder of checkpoint ``name`` (``best``, ``last`` or ``epoch-<k>``).

    Raises InvalidCheckpointName for any other form, CheckpointNotFound for a valid
    name the index does not list.
    """
    index = read_index(run_dir)
    target = _listed_name(index, validate_name(name))
    folder = checkpoints_dir(run_dir) / target
    if folder.is_symlink() or not folder.is_dir():
        raise CheckpointNotFound(f"checkpoint {target!r} is listed but its folder is missing")
    return folder


def find_checkpoint_file(run_dir: str | Path, name: str, file: str) -> Path:
    """The path of ``file`` inside checkpoint ``name``; only files its meta.json lists."""
    return checkpoint_file(find_checkpoint(run_dir, name), name, file)


def checkpoint_file(folder: Path, name: str, file: str) -> Path:
    """The path of ``file`` inside the checkpoint ``folder``; only files its meta.json lists."""
    if not _is_plain_file_name(file):
        raise InvalidCheckpointName(
            f"invalid checkpoint file name {file!r}", "use a file name the checkpoint lists"
        )
    listed = [f.name for f in read_meta(folder).files]
    if file not in listed:
        raise CheckpointNotFound(
            f"checkpoint {name!r} has no file {file!r}", f"files: {', '.join(listed)}"
        )
    path = folder / file
    if path.is_symlink() or not path.is_file():
        raise CheckpointNotFound(f"file {file!r} of checkpoint {name!r} is missing")
    return path


def read_meta(folder: str | Path) -> Entry:
    """The meta.json of a checkpoint folder."""
    path = Path(folder) / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entry = Entry.from_dict(data)
    except FileNotFoundError as exc:
        raise CheckpointNotFound(f"{path} does not exist") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpoint(f"{path} is unreadable: {exc}") from exc
    if not all(_is_plain_file_name(f.name) for f in entry.files):
        raise CorruptCheckpoint(f"{path} lists a file outside its folder")
    return entry


def read_config(folder: str | Path) -> dict[str, Any]:
    """Thaw's record of a checkpoint folder (thaw.json, else config.json): how to rebuild
    its model."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointNotFound(f"{path} does not exist") from exc
    except ValueError as exc:
        raise CorruptCheckpoint(f"{path} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptCheckpoint(f"{path} is not a JSON object")
    return data


def load_model_state(folder: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The model state dict stored in a checkpoint folder."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise CheckpointNotFound(f"{path} does not exist")
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as exc:
        raise CorruptCheckpoint(f"{path} is unreadable: {exc}") from exc


def load_checkpoint_training_state(folder: str | Path) -> Any:
    """The resume state stored in a checkpoint folder."""
    return load_training_state(Path(folder) / TRAINING_STATE_FILE)


def verify_checkpoint(folder: str | Path) -> list[FileInfo]:
    """Check every listed file's size and sha256; raises CorruptCheckpoint on a mismatch."""
    folder = Path(folder)
    files = read_meta(folder).files
    for info in files:
        path = folder / info.name
        if not path.is_file():
            raise CorruptCheckpoint(f"{folder.name}/{info.name} is missing")
        if path.stat().st_size != info.size or sha256_file(path) != info.sha256:
            raise CorruptCheckpoint(f"{folder.name}/{info.name} does not match its recorded sha256")
    return files


def clean_incomplete(run_dir: str | Path) -> list[str]:
    """Remove what interrupted saves left: temp folders and unlisted checkpoint folders.

    Only the run's writer may call this: a save in progress looks like debris.
    Returns the names removed.
    """
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    listed = set(read_index(run_dir).names())
    removed: list[str] = []
    for child in root.iterdir():
        name = child.name
        stray_epoch = epoch_of(name) is not None and name not in listed
        stray_index = name.startswith(f".{INDEX_FILE}.tmp-")
        if is_temp_name(name) or stray_epoch or stray_index:
            remove_tree(child)
            removed.append(name)
    if removed:
        fsync_dir(root)
    return sorted(removed)


def _write_checkpoint_folder(
    folder: Path,
    name: str,
    epoch: int,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    training_state: Any,
    metrics: dict[str, Any],
    library_config: Mapping[str, Any] | None = None,
    token: int | None = None,
    adapter: AdapterExport | None = None,
) -> Entry:
    digests: dict[str, str] = {}
    with atomic_path(folder / MODEL_FILE) as tmp:
        digests[MODEL_FILE] = save_tensors(tmp, model_state, {"format": "pt"})
    names = [MODEL_FILE, CONFIG_FILE, TRAINING_STATE_FILE]
    if library_config is None:
        atomic_write_json(folder / CONFIG_FILE, dict(config))
    else:
        atomic_write_json(folder / CONFIG_FILE, dict(library_config))
        atomic_write_json(folder / RECORD_FILE, dict(config))
        names.insert(2, RECORD_FILE)
    digests[TRAINING_STATE_FILE] = save_training_state(folder / TRAINING_STATE_FILE, training_state)
    if adapter is not None:
        names += write_adapter(folder, adapter)
        fsync_dir(folder / ADAPTER_DIR)
    files = [
        FileInfo(
            name=n,
            size=(folder / n).stat().st_size,
            sha256=digests.get(n) or sha256_file(folder / n),
        )
        for n in names
    ]
    entry = Entry(
        name=name,
        epoch=epoch,
        step=step,
        metrics=metrics,
        files=files,
        created_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )
    meta = {"format": META_FORMAT, "version": META_VERSION, **entry.to_dict()}
    if token is not None:
        meta["token"] = token
    atomic_write_json(folder / META_FILE, meta)
    fsync_dir(folder)
    return entry


def _listed_name(index: Index, name: str) -> str:
    if name in (BEST, LAST):
        target = index.best if name == BEST else index.last
        if target is None:
            raise CheckpointNotFound(f"no {name!r} checkpoint: nothing was saved yet")
        return target
    if index.get(name) is None:
        listed = ", ".join(index.names()) or "none"
        raise CheckpointNotFound(f"no checkpoint {name!r}", f"checkpoints: {listed}")
    return name


def _is_plain_file_name(file: object) -> bool:
    """A file of the checkpoint folder itself, or one of its ``adapter/`` folder."""
    if isinstance(file, str) and file.startswith(f"{ADAPTER_DIR}/"):
        file = file[len(ADAPTER_DIR) + 1 :]
    return (
        isinstance(file, str)
        and file.isascii()
        and file.isprintable()
        and file not in ("", ".", "..")
        and "/" not in file
        and "\\" not in file
        and not file.startswith(".")
    )


def _json_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as strict JSON: tensors and numpy scalars become numbers, NaN/inf become None."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        out[str(key)] = _json_value(value)
    return out


def _json_value(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    raise TypeError(f"metric value {value!r} is not JSON")
