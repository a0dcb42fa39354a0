"""Run one stored evaluation, prediction or export of a job's checkpoint; the worker's
task body, free of Celery."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from thaw.checkpoints.lookup import checkpoint_copy
from thaw.data.shape import UploadLookup, dataset_roots, find_upload
from thaw.inference.checkpoint_model import CheckpointModel
from thaw.inference.errors import ClassMismatch, check_classes
from thaw.inference.evaluate import LabelledData, evaluate, uploaded_data, validation_names
from thaw.inference.predict import predict
from thaw.inference.task_files import fetch_inputs, publish_export, remove_task_files, task_dir
from thaw.settings import Settings
from thaw.spec import JobSpec, validation_context
from thaw.store.checkpoint_tasks import CheckpointTask
from thaw.training.data_source import load_training_data


def checkpoint_folder(settings: Settings, job_id: str, name: str) -> Path:
    """The checkpoint to load; with an object store, fetched from it on first use."""
    return checkpoint_copy(settings, job_id, name, outage_seconds=settings.artifacts_outage_seconds)


def run_task(
    task: CheckpointTask,
    job_spec: dict[str, Any],
    settings: Settings,
    uploads: UploadLookup | None,
) -> dict[str, Any]:
    """The task's result document; raises ThawError for what the caller can fix. A
    prediction's inputs are removed when it ends, however it ends, and a failed export's
    files (never served) when it fails."""
    try:
        result = _run(task, job_spec, settings, uploads)
    except BaseException:
        if task.kind == "export":
            with contextlib.suppress(Exception):  # the store may be what failed
                remove_task_files(settings, task)
        raise
    finally:
        if task.kind == "prediction":
            remove_task_files(settings, task)
    return result


def _run(
    task: CheckpointTask,
    job_spec: dict[str, Any],
    settings: Settings,
    uploads: UploadLookup | None,
) -> dict[str, Any]:
    folder = checkpoint_folder(settings, task.job_id, task.checkpoint)
    if task.kind == "export":
        from thaw.inference.export import export_onnx  # onnx loads for an export only

        model = CheckpointModel.load(folder, device="cpu")
        result = export_onnx(
            model,
            task_dir(settings, task),
            opset=settings.onnx_opset,
            tolerance=settings.export_tolerance,
        )
        publish_export(settings, task, [f["name"] for f in result["files"]])
        return {"checkpoint_folder": folder.name, **result}
    model = CheckpointModel.load(folder)
    if task.kind == "prediction":
        return _predict(task, model, settings)
    labelled = _evaluation_data(task, model, job_spec, settings, uploads)
    result = evaluate(
        model,
        labelled,
        batch_size=settings.evaluation_batch_size,
        worst=settings.evaluation_worst_examples,
        pairs=settings.evaluation_confused_pairs,
    )
    return {"checkpoint_folder": folder.name, **result}


def _predict(task: CheckpointTask, model: CheckpointModel, settings: Settings) -> dict[str, Any]:
    request = task.request
    if "texts" in request:
        rows = predict(
            model,
            texts=request["texts"],
            top_k=int(request["top_k"]),
            batch_size=settings.evaluation_batch_size,
        )
    else:
        rows = predict(
            model,
            folder=fetch_inputs(settings, task, request["stored"]),
            files=request["stored"],
            names=request["files"],
            top_k=int(request["top_k"]),
            batch_size=settings.evaluation_batch_size,
        )
    return {"classes": model.classes, "predictions": rows}


def _evaluation_data(
    task: CheckpointTask,
    model: CheckpointModel,
    job_spec: dict[str, Any],
    settings: Settings,
    uploads: UploadLookup | None,
) -> LabelledData:
    dataset = task.request.get("dataset") or {"split": "validation"}
    if dataset.get("id"):
        record = find_upload(dataset["id"], uploads, ("dataset",))
        from thaw.upload_cache import upload_path  # the Redis client loads with uploads

        path = upload_path(record, settings)
        return uploaded_data(model, path, record.format, dataset_roots(settings))

    data = load_training_data(
        JobSpec.model_validate(job_spec, context=validation_context(settings)), settings, uploads
    )
    if list(data.classes) != model.classes:
        check_classes(data.classes, model.classes)
        raise ClassMismatch([], model.classes)
    return LabelledData(data.val, validation_names(data.val))
