"""Export a checkpoint to ONNX (dynamic batch axis) and check it in onnxruntime."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from thaw.hashing import sha256_file
from thaw.inference.checkpoint_model import CheckpointModel
from thaw.inference.errors import ExportMismatch, ExportUnavailable

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
# Protobuf's 2 GiB cap on one file, with room for the graph itself.
SINGLE_FILE_MAX_BYTES = 1_800_000_000
CHECK_TEXTS = [
    "a short one",
    "a somewhat longer sentence to check the sequence axis of the export",
    "three",
]


class _ImageLogits(nn.Module):
    """The model with one image tensor in and its logits as the one output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values)
        return out.logits if hasattr(out, "logits") else out


class _TextLogits(nn.Module):
    """The model with token ids and attention mask in and its logits as the one output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _param_bytes(model: nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportUnavailable(
            f"this worker cannot export to ONNX ({exc.name} is missing); install Thaw's "
            "dependencies onnx, onnxscript and onnxruntime on the worker"
        ) from exc


def _inputs(model: CheckpointModel, batch: int, seed: int) -> tuple[list[str], list[torch.Tensor]]:
    if model.modality == "text":
        encoded = model.tokenizer()(
            (CHECK_TEXTS * batch)[:batch],
            padding=True,
            truncation=True,
            max_length=int(model.config.get("max_length") or 128),
            return_tensors="pt",
        )
        return ["input_ids", "attention_mask"], [
            encoded["input_ids"],
            encoded["attention_mask"],
        ]
    size = int(model.config["image_size"])
    gen = torch.Generator().manual_seed(seed)
    return ["pixel_values"], [torch.randn(batch, 3, size, size, generator=gen)]


def export_onnx(
    model: CheckpointModel, out_dir: Path, *, opset: int, tolerance: float
) -> dict[str, Any]:
    """Write ``model.onnx`` and ``config.json`` into ``out_dir`` (replacing it whole) and
    return the export's record: files with size and sha256, and the largest absolute
    difference between onnxruntime's and PyTorch's logits on a few inputs."""
    _require_onnx()
    import onnxruntime

    text = model.modality == "text"
    inner = model.model.to("cpu").eval()
    wrapped = (_TextLogits(inner) if text else _ImageLogits(inner)).eval()
    names, example = _inputs(model, 2, seed=0)
    batch = torch.export.Dim("batch", min=1, max=4096)
    dims: dict[int, Any] = {0: batch}
    if text:
        dims[1] = torch.export.Dim(
            "sequence", min=1, max=int(model.config.get("max_length") or 512)
        )
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    try:
        torch.onnx.export(
            wrapped,
            tuple(example),
            str(tmp / MODEL_FILE),
            input_names=names,
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={n: dict(dims) for n in names},
            verbose=False,
            external_data=_param_bytes(inner) > SINGLE_FILE_MAX_BYTES,
        )
        session = onnxruntime.InferenceSession(
            str(tmp / MODEL_FILE), providers=["CPUExecutionProvider"]
        )
        _, check = _inputs(model, 3, seed=1)
        with torch.no_grad():
            expected = wrapped(*check).float().numpy()
        got = session.run(["logits"], {n: t.numpy() for n, t in zip(names, check, strict=True)})
        diff = float(abs(got[0] - expected).max())
        if not diff <= tolerance:
            raise ExportMismatch(
                f"onnxruntime's logits differ from PyTorch's by up to {diff:.3g}, more than "
                f"THAW_EXPORT_TOLERANCE={tolerance:g}"
            )
        record = {
            **model.config,
            "format": "onnx",
            "opset": opset,
            "inputs": names,
            "outputs": ["logits"],
            "dynamic_axes": {n: ["batch", "sequence"] if text else ["batch"] for n in names},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        files = [
            {"name": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.iterdir())
            if p.is_file()
        ]
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "format": "onnx",
        "opset": opset,
        "inputs": names,
        "max_abs_diff": diff,
        "checked_inputs": len(check[0]),
        "files": files,
    }
