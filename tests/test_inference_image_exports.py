"""ONNX exports of timm and Hugging Face image classifiers after a short training run: each
matches PyTorch in onnxruntime on a batch size it was not traced with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import torch
from zoo_models import (
    HF_VIT_FOLDER,
    TIMM_RESNET,
    TIMM_RESNET_FILE,
    TIMM_VIT_FOLDER,
    write_hf_vit,
    write_timm_resnet,
    write_timm_vit,
)

import thaw
from thaw.inference.checkpoint_model import CheckpointModel
from thaw.inference.export import export_onnx
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train

pytestmark = pytest.mark.slow

MODELS = {
    "timm-resnet": ({"source": "timm", "name": TIMM_RESNET, "weights_file": TIMM_RESNET_FILE},
                    write_timm_resnet, 16),
    "timm-vit": ({"source": "timm", "name": TIMM_VIT_FOLDER}, write_timm_vit, 32),
    "hf-vit": ({"source": "huggingface", "name": HF_VIT_FOLDER}, write_hf_vit, 32),
}  # fmt: skip


@pytest.mark.parametrize("label", list(MODELS))
def test_image_classifier_exports_match_pytorch(label: str, tmp_path: Path) -> None:
    base_model, write, size = MODELS[label]
    settings = Settings(
        data_dir=tmp_path / "data", models_dir=tmp_path / "models", datasets_dir=tmp_path
    )
    settings.models_dir.mkdir()
    write(settings.models_dir)
    spec: dict[str, Any] = {
        "base_model": base_model,
        "dataset": {"synthetic": {"num_classes": 3, "num_examples": 12}},
        "freeze": {"default": "frozen", "rules": [{"match": "group:-1:", "trainable": True}]},
        "hyperparameters": {"epochs": 1, "batch_size": 6, "image_size": size},
    }
    train(JobSpec.model_validate(spec), tmp_path / "run", settings)
    folder = tmp_path / "run" / "checkpoints" / "best"

    record = export_onnx(
        CheckpointModel.load(folder, device="cpu"), tmp_path / "onnx", opset=18, tolerance=1e-4
    )
    assert record["max_abs_diff"] <= 1e-4
    session = onnxruntime.InferenceSession(
        str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = torch.randn(7, 3, size, size, generator=torch.Generator().manual_seed(5))
    got = session.run(["logits"], {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        out = thaw.load_model(folder)(x)
    want = (out.logits if hasattr(out, "logits") else out).numpy()
    assert got.shape == (7, 3)
    assert float(np.abs(got - want).max()) <= 1e-4


def test_an_export_whose_upload_fails_part_way_leaves_nothing_in_the_store(
    tmp_path: Path,
) -> None:
    from thaw.artifacts import object_store
    from thaw.checkpoints.remote import store_run
    from thaw.inference.task_files import publish_export, task_dir, task_prefix
    from thaw.inference.tasks import run_task
    from thaw.job_status import TaskStatus
    from thaw.store.checkpoint_tasks import CheckpointTask

    settings = Settings(data_dir=tmp_path / "data", artifacts_url=f"file://{tmp_path}/bucket")
    job_id = "job_0123456789abcdef01234567"
    spec = {
        "base_model": {"source": "torchvision", "name": "resnet18"},
        "dataset": {"synthetic": {"num_classes": 3, "num_examples": 12}},
        "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
        "hyperparameters": {"epochs": 1, "batch_size": 6, "image_size": 32},
    }
    remote = store_run(settings, job_id)
    train(JobSpec.model_validate(spec), settings.jobs_dir / job_id, settings, remote=remote)
    task = CheckpointTask(
        id="ex_0123456789abcdef01234567", kind="export", tenant="default", job_id=job_id,
        status=TaskStatus.RUNNING, checkpoint="best", request={}, result=None, error=None,
        created_at="", started_at=None, finished_at=None,
    )  # fmt: skip
    store = object_store(settings)
    assert store is not None
    prefix = f"{task_prefix(task)}/"
    # config.json uploads first; a folder where model.onnx goes makes the second one fail.
    (tmp_path / "bucket" / prefix / "model.onnx").mkdir(parents=True)
    with pytest.raises(OSError):
        run_task(task, spec, settings, None)
    assert store.list(prefix) == []
    assert not task_dir(settings, task).exists()

    (tmp_path / "bucket" / prefix / "model.onnx").rmdir()
    folder = task_dir(settings, task)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    publish_export(settings, task, ["model.onnx"])
    assert store.list(prefix) == [f"{prefix}model.onnx"]
    assert not folder.exists()  # the worker's copy goes once the store holds the files
