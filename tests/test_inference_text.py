"""A MiniLM text classifier after training: its ONNX export matches PyTorch in onnxruntime
on a dynamic batch and sequence length, and evaluation and predictions read texts the way
training tokenized them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from sklearn.metrics import confusion_matrix
from support import minilm_dir

import thaw
from thaw.inference.checkpoint_model import CheckpointModel
from thaw.inference.evaluate import evaluate, uploaded_data
from thaw.inference.export import export_onnx
from thaw.inference.predict import predict
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train

pytestmark = pytest.mark.slow
TEXTS = [f"{'good great' if i % 2 else 'bad awful'} {i}" for i in range(16)]
LABELS = ["pos" if i % 2 else "neg" for i in range(16)]


@pytest.fixture(scope="module")
def checkpoint(module_tmp_path: Path) -> Path:
    root = module_tmp_path
    settings = Settings(
        data_dir=root / "data", models_dir=minilm_dir().parent, datasets_dir=root / "datasets"
    )
    settings.datasets_dir.mkdir(parents=True)
    with (settings.datasets_dir / "t.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(TEXTS, LABELS, strict=True))
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "huggingface", "name": minilm_dir().name},
            "dataset": {"path": "t.csv"},
            "freeze": {"default": "frozen", "rules": [{"match": "group:-2:", "trainable": True}]},
            "hyperparameters": {"epochs": 1, "batch_size": 8, "max_length": 16},
        }
    )
    train(spec, root / "run", settings)
    return root / "run" / "checkpoints" / "best"


def test_minilm_onnx_export_matches_pytorch(checkpoint: Path, tmp_path: Path) -> None:
    model = CheckpointModel.load(checkpoint, device="cpu")
    record = export_onnx(model, tmp_path / "onnx", opset=18, tolerance=1e-4)
    assert record["max_abs_diff"] <= 1e-4
    assert record["inputs"] == ["input_ids", "attention_mask"]
    names = {f["name"] for f in record["files"]}
    assert {"model.onnx", "config.json"} <= names

    session = onnxruntime.InferenceSession(
        str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    tokenizer = model.tokenizer()
    # Batch and sequence lengths the export was not traced with.
    batch = tokenizer([*TEXTS[:5], "a much longer text than any used when exporting it"],
                      padding=True, return_tensors="pt")  # fmt: skip
    got = session.run(
        ["logits"],
        {
            "input_ids": batch["input_ids"].numpy(),
            "attention_mask": batch["attention_mask"].numpy(),
        },
    )[0]
    loaded = thaw.load_model(checkpoint)
    with torch.no_grad():
        want = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert got.shape == (6, 2)
    assert float(np.abs(got - want.numpy()).max()) <= 1e-4


def test_text_evaluation_and_predictions_agree_with_the_loaded_model(
    checkpoint: Path, tmp_path: Path
) -> None:
    with (tmp_path / "test.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(TEXTS, LABELS, strict=True))
    model = CheckpointModel.load(checkpoint, device="cpu")
    result = evaluate(
        model,
        uploaded_data(model, tmp_path / "test.csv", "csv", [tmp_path]),
        batch_size=4,
        worst=3,
        pairs=2,
    )
    loaded = thaw.load_model(checkpoint)
    tokenizer = model.tokenizer()
    preds = []
    for text in TEXTS:
        ids = tokenizer(text, truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            preds.append(int(loaded(**ids).logits.argmax(dim=1)))
    classes = result["classes"]
    assert classes == ["neg", "pos"]
    truth = [classes.index(label) for label in LABELS]
    assert result["confusion_matrix"] == confusion_matrix(truth, preds, labels=[0, 1]).tolist()
    assert next(w["example"] for w in result["worst_examples"]).startswith("row ")

    rows = predict(model, texts=TEXTS, top_k=2, batch_size=5)
    assert [classes.index(r["top"][0]["class"]) for r in rows] == preds
    assert all(abs(sum(t["probability"] for t in r["top"]) - 1) < 1e-5 for r in rows)
