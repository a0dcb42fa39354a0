"""GPU training throughput of Thaw's step, with the step time split into data wait and compute.

For each model, Thaw's own pieces (``resolve``, ``FreezeEngine``, ``make_loaders``, the
placement ``choose_placement`` picks) train on files written to a temp folder, so the data
path does its real work: JPEG decode, resize and normalize for images, tokenizing for
text. Two passes after ``--warmup`` steps:

- ``split``: each step synchronized and timed in three parts: data wait (``next()`` on the
  DataLoader), host-to-device copy, and compute (forward, backward, optimizer step).
- ``free``: ``--steps`` steps with no synchronization but at the end: the samples/s a
  run gets.

Defaults are the GPU figures of BENCHMARKS.md: resnet50 at 224 px (bf16 autocast,
channels_last, batch 128) and MiniLM (all-MiniLM-L6-v2, 128 tokens, batch 128), each with
its top block and head trainable (bench/common.py).

    .venv/bin/python bench/gpu_throughput.py                    # cuda, both models
    .venv/bin/python bench/gpu_throughput.py --models resnet50 --batch-size 256
    .venv/bin/python bench/gpu_throughput.py --smoke            # CPU, tiny: checks it runs
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from common import (
    MINILM,
    bench_settings,
    engine_step,
    median,
    now,
    quiet_transformers,
    spec_body,
    sync,
)

MODELS = ("resnet50", MINILM)
SPLIT = 0.2


@dataclass
class Figures:
    model: str
    device: str
    precision: str
    channels_last: bool
    batch_size: int
    input: str
    loader_workers: int
    steps: int
    samples_per_s: float
    step_ms: float
    data_wait_ms: float
    copy_ms: float
    compute_ms: float
    data_wait_share: float
    peak_memory_mib: float | None


def write_images(root: Path, count: int, size: int, classes: int) -> None:
    """``count`` JPEGs of ``size`` px (smooth colour fields with noise), spread over classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-20, 21, (size, size, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)


def write_texts(path: Path, count: int, words: int, classes: int) -> None:
    """A CSV of ``count`` rows of ``words`` random words each (enough for the token budget)."""
    rng = random.Random(0)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "su", "te", "ra") for b in ("n", "s", "t", "")]
    vocab += ["model", "layer", "frozen", "thaw", "train", "data", "graph", "token", "image"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(count):
            writer.writerow([" ".join(rng.choices(vocab, k=words)), f"c{i % classes}"])


def build(args: argparse.Namespace, model: str, tmp: Path) -> tuple[Any, ...]:
    """Model on its device, engine, scaler, train loader and placement, as run.py builds them."""
    from thaw.data.shape import DataShape
    from thaw.freezing.engine import FreezeEngine
    from thaw.freezing.resolve import resolve
    from thaw.spec import JobSpec
    from thaw.training.data_source import load_training_data
    from thaw.training.device import choose_placement
    from thaw.training.loaders import default_workers, make_loaders

    batch = args.batch_size
    count = int((args.warmup + 2 * args.steps + 2) * batch / (1 - SPLIT)) + args.classes
    datasets = tmp / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    if model == MINILM:
        write_texts(datasets / "texts.csv", count, args.max_length, args.classes)
        path = "texts.csv"
    else:
        write_images(datasets / "images", count, args.stored_size, args.classes)
        path = "images"
    body = spec_body(
        model,
        num_classes=args.classes,
        num_examples=count,
        epochs=1,
        batch_size=batch,
        image_size=args.image_size,
        max_length=args.max_length,
        precision=args.precision,
        workers=args.workers,
    )
    body["dataset"] = {"path": path, "validation": {"split": SPLIT}}
    spec = JobSpec.model_validate(body)
    settings = bench_settings(tmp)
    data = load_training_data(spec, settings, None)
    hp = spec.hyperparameters
    torch.manual_seed(hp.seed)
    resolved = resolve(spec, settings, DataShape(list(data.classes), len(data.train)), meta=False)
    placement = choose_placement(hp.precision, resolved.built.convolutional, args.device)
    net = resolved.built.model.to(placement.device)
    if placement.channels_last:
        net.to(memory_format=torch.channels_last)
    engine = FreezeEngine.from_resolved(resolved, fused=placement.device.type == "cuda")
    engine.advance(0)
    net.train()
    workers = default_workers(placement, hp.num_workers)
    loader, _, sampler = make_loaders(
        data.train,
        data.val,
        batch_size=batch,
        seed=hp.seed,
        placement=placement,
        workers=workers,
        collate_fn=data.collate_fn,
    )
    sampler.set_epoch(1)
    scaler = torch.amp.GradScaler(enabled=placement.use_scaler)
    return net, engine, scaler, loader, placement, workers


def to_device(inputs: Any, labels: torch.Tensor, placement: Any) -> tuple[Any, torch.Tensor]:
    dev = placement.device
    if isinstance(inputs, dict):
        inputs = {k: v.to(dev, non_blocking=True) for k, v in inputs.items()}
    else:
        fmt = torch.channels_last if placement.channels_last else torch.contiguous_format
        inputs = inputs.to(dev, non_blocking=True, memory_format=fmt)
    return inputs, labels.to(dev, non_blocking=True)


def measure(args: argparse.Namespace, model: str) -> Figures:
    with tempfile.TemporaryDirectory(prefix="thaw-gpu-bench-") as tmp:
        net, engine, scaler, loader, placement, workers = build(args, model, Path(tmp))
        batches = iter(loader)
        dev = placement.device
        for _ in range(args.warmup):
            engine_step(net, engine, scaler, placement, *to_device(*next(batches), placement))
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        waits, copies, computes = [], [], []
        for _ in range(args.steps):
            t0 = now()
            inputs, labels = next(batches)
            t1 = now()
            inputs, labels = to_device(inputs, labels, placement)
            sync(dev)
            t2 = now()
            engine_step(net, engine, scaler, placement, inputs, labels)
            sync(dev)
            t3 = now()
            waits.append(t1 - t0)
            copies.append(t2 - t1)
            computes.append(t3 - t2)

        start = now()
        samples = 0
        for _ in range(args.steps):
            inputs, labels = next(batches)
            samples += int(labels.shape[0])
            engine_step(net, engine, scaler, placement, *to_device(inputs, labels, placement))
        sync(dev)
        free_s = now() - start

        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        steps_s = [a + b + c for a, b, c in zip(waits, copies, computes, strict=True)]
        total = sum(steps_s)
        dtype = placement.autocast_dtype
        return Figures(
            model=model,
            device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            precision=str(dtype).removeprefix("torch.") if dtype else "fp32",
            channels_last=placement.channels_last,
            batch_size=args.batch_size,
            input=f"{args.max_length} tokens" if model == MINILM else f"{args.image_size} px",
            loader_workers=workers,
            steps=args.steps,
            samples_per_s=round(samples / free_s, 1),
            step_ms=round(1000 * median(steps_s), 2),
            data_wait_ms=round(1000 * median(waits), 2),
            copy_ms=round(1000 * median(copies), 2),
            compute_ms=round(1000 * median(computes), 2),
            data_wait_share=round(sum(waits) / total, 3) if total else 0.0,
            peak_memory_mib=round(peak, 1) if peak is not None else None,
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: resnet50,minilm")
    p.add_argument("--device", default=None, help="default cuda (cpu with --smoke)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=None, help="default 128 (smoke 4)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per pass (50; smoke 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (10; smoke 1)")
    p.add_argument("--image-size", type=int, default=None, help="default 224 (smoke 64)")
    p.add_argument("--stored-size", type=int, default=None, help="JPEG side (256; smoke 72)")
    p.add_argument("--max-length", type=int, default=None, help="MiniLM tokens (128; smoke 32)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (Thaw default)")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run: checks the script works")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    small = args.smoke
    defaults = {
        "device": "cpu" if small else "cuda",
        "batch_size": 4 if small else 128,
        "steps": 2 if small else 50,
        "warmup": 1 if small else 10,
        "image_size": 64 if small else 224,
        "stored_size": 72 if small else 256,
        "max_length": 32 if small else 128,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here; run on a GPU host, or pass --smoke", file=sys.stderr)
        return 2
    quiet_transformers()
    rows = [measure(args, model) for model in args.models.split(",")]
    header = (
        "| model | input | precision | channels_last | batch | samples/s | step ms "
        "| data wait ms | copy ms | compute ms | data wait share | peak MiB |"
    )
    print(f"device: {rows[0].device}, torch {torch.__version__}, loader workers "
          f"{rows[0].loader_workers}, {args.steps} timed steps per pass")  # fmt: skip
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for r in rows:
        print(
            f"| {r.model} | {r.input} | {r.precision} | {r.channels_last} | {r.batch_size} "
            f"| {r.samples_per_s} | {r.step_ms} | {r.data_wait_ms} | {r.copy_ms} "
            f"| {r.compute_ms} | {r.data_wait_share} | {r.peak_memory_mib} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
