"""Feature cache: Thaw's ``train()`` against a hand-written loop that freezes the usual way.

The hand-written loop sets ``requires_grad=False`` on the frozen parameters, puts every
wholly frozen top-level block in eval mode after each ``model.train()``, trains with AdamW
over the trainable parameters (a param group added at each thaw) and validates every
epoch, over the same dataset objects, DataLoader settings and seed as Thaw. It decodes its
images every epoch, as a torchvision ``ImageFolder`` loop does; Thaw decodes them once
(decoded-input cache), so the ``thaw (cache off)`` row shows what the decoded-input cache
alone gives and ``thaw`` what both caches give.

Cases (each a few seconds on a 2-core CPU with the small default datasets):

- resnet18 on digits-like 64 px PNG images, 5 epochs: ``head-only`` (fc), ``layer4+fc``,
  ``gradual`` (the preset, a phase every 2 epochs, 6 epochs; ratios per phase), and
  ``no-cache`` (``augment: standard``: the cache cannot engage; target >= 0.97);
- MiniLM with embeddings and layers 0-3 frozen, 5 epochs (stock dropout 0.1, which
  ``freeze.dropout: follow`` runs in eval mode in the frozen layers).

Ratios are hand-loop seconds over Thaw seconds (training and validation, model build and
data loading excluded), median over ``--rounds``, after one short warmup run of each path;
seconds are process CPU time with one torch thread on a CPU (``--clock``, ``--threads``),
wall time on CUDA; cache memory from
Thaw's log.

    .venv/bin/python bench/feature_cache.py
    .venv/bin/python bench/feature_cache.py --cases head-only,minilm --rounds 3
    .venv/bin/python bench/feature_cache.py --device cuda --image-size 224 --bf16 --images 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import bench_settings, median, minilm_dir, quiet_transformers
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

# The clock every time is read with: process CPU time on a CPU device, one torch thread
# (steadier than wall time on a machine shared with other work, and no OpenMP threads
# spinning; both paths run in this process with no DataLoader workers), wall time with CUDA
# synchronization on a GPU.
CLOCK = [time.perf_counter]

RESNET_GROUPS = ("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",), ("fc.",)
MINILM_FROZEN = ("bert.embeddings.", *(f"bert.encoder.layer.{i}." for i in range(4)))


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # resnet18 | minilm
    epochs: int
    # per epoch (1-based), the parameter-name prefixes that train
    trainable: tuple[tuple[str, ...], ...]
    freeze: dict[str, Any]
    schedule: list[dict[str, Any]] = field(default_factory=list)
    augment: str = "none"
    target: float | None = None


def _resnet_cases(epochs: int) -> list[Case]:
    head, top = ("fc.",), ("layer4.", "fc.")
    only = {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]}
    top_rules = {
        "default": "frozen",
        "rules": [{"match": m, "trainable": True} for m in ("layer4", "fc")],
    }
    gradual = tuple(
        tuple(p for g in RESNET_GROUPS[len(RESNET_GROUPS) - 1 - (e - 1) // 2 :] for p in g)
        for e in range(1, 7)
    )
    return [
        Case("head-only", "resnet18", epochs, (head,) * epochs, only, target=4.5),
        Case("layer4+fc", "resnet18", epochs, (top,) * epochs, top_rules, target=1.5),
        Case(
            "gradual",
            "resnet18",
            6,
            gradual,
            {"default": "frozen"},
            [{"preset": "gradual", "every_epochs": 2}],
        ),
        Case("no-cache", "resnet18", epochs, (top,) * epochs, top_rules, augment="standard",
             target=0.97),
    ]  # fmt: skip


def _minilm_case(epochs: int) -> Case:
    freeze = {
        "default": "trainable",
        "rules": [
            {"match": "bert.embeddings", "trainable": False},
            {"match": "bert.encoder.layer.[0-3]", "trainable": False},
        ],
    }
    trainable = ("bert.encoder.layer.4.", "bert.encoder.layer.5.", "bert.pooler.", "classifier.")
    return Case("minilm", "minilm", epochs, (trainable,) * epochs, freeze)


# Data ---------------------------------------------------------------------------------------


def write_digits(root: Path, count: int, size: int) -> Path:
    """``count`` digits-like PNGs (scikit-learn's 8x8 digits scaled up) in class folders."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(count):
        pixels, label = digits.images[i % len(digits.images)], int(digits.target[i % 1797])
        gray = np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(folder / f"{i:05d}.png")
    return root


def spec_for(case: Case, args: argparse.Namespace, feature_cache: str) -> Any:
    from thaw.spec import JobSpec

    if case.model == "minilm":
        base = {"source": "huggingface", "name": "model"}
        dataset: dict[str, Any] = {
            "synthetic": {"num_classes": 4, "num_examples": args.texts},
            "validation": {"split": 0.2},
        }
    else:
        base = {"source": "torchvision", "name": "resnet18"}
        dataset = {"path": "digits", "format": "image_folder", "validation": {"split": 0.2}}
    return JobSpec.model_validate(
        {
            "base_model": base,
            "dataset": dataset,
            "freeze": case.freeze,
            "schedule": case.schedule,
            "hyperparameters": {
                "epochs": case.epochs,
                "batch_size": args.batch_size,
                "lr": 1e-3,
                "lr_scheduler": "constant",
                "image_size": args.image_size,
                "max_length": args.max_length,
                "precision": "bf16" if args.bf16 else "fp32",
                "feature_cache": feature_cache,
                "augment": case.augment,
                "seed": 0,
            },
            "checkpointing": {"every_epochs": case.epochs, "keep_last": 1},
        }
    )


# Thaw ---------------------------------------------------------------------------------------


class Clock:
    """Epoch start and end times, from the reporter hooks ``train()`` calls."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.end: dict[int, float] = {}
        self.lines: list[str] = []

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        self.start.setdefault(epoch, CLOCK[0]())

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.end[epoch] = CLOCK[0]()

    def log(self, level: str, message: str) -> None:
        self.lines.append(message)

    def epochs(self) -> list[float]:
        return [self.end[e] - self.start[e] for e in sorted(self.end)]


def run_thaw(case: Case, args: argparse.Namespace, tmp: Path, cache: str) -> Clock:
    from thaw.training import train
    from thaw.training.reporter import NullReporter

    class Reporter(Clock, NullReporter):
        pass

    reporter = Reporter()
    run = Path(tempfile.mkdtemp(dir=tmp))
    train(spec_for(case, args, cache), run, bench_settings(tmp), reporter, device=args.device)
    return reporter


# The hand-written loop ----------------------------------------------------------------------


def run_hand(case: Case, args: argparse.Namespace, tmp: Path) -> list[float]:
    from thaw.training.data_source import load_training_data

    spec = spec_for(case, args, "off")
    data = load_training_data(spec, bench_settings(tmp), None)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = hand_model(case, len(data.classes)).to(device)
    conv = case.model != "minilm"
    if conv and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    sampler = RandomSampler(data.train, generator=torch.Generator().manual_seed(0))
    common = {"batch_size": args.batch_size, "collate_fn": data.collate_fn}
    common |= {"pin_memory": device.type == "cuda", "num_workers": args.workers}
    train_loader = DataLoader(data.train, sampler=sampler, **common)
    val_loader = DataLoader(data.val, **common)
    params = dict(model.named_parameters())
    optimizer: torch.optim.Optimizer | None = None
    trained: set[str] = set()
    times = []
    for epoch in range(1, case.epochs + 1):
        start = CLOCK[0]()
        names = {n for n in params if n.startswith(case.trainable[epoch - 1])}
        for name, p in params.items():
            p.requires_grad_(name in names)
        new = [params[n] for n in params if n in names - trained]
        if optimizer is None:
            optimizer = torch.optim.AdamW(new, lr=1e-3, fused=device.type == "cuda")
        elif new:
            optimizer.add_param_group({"params": new, "lr": 1e-3})
        trained |= names
        model.train()
        frozen_part_eval(model)
        for inputs, labels in train_loader:
            with autocast(args, device):
                out = logits(model, move(inputs, device, conv))
                loss = nn.functional.cross_entropy(out, labels.to(device, non_blocking=True))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            for inputs, labels in val_loader:
                with autocast(args, device):
                    out = logits(model, move(inputs, device, conv))
                float(nn.functional.cross_entropy(out.float(), labels.to(device)))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(CLOCK[0]() - start)
    return times


def hand_model(case: Case, num_classes: int) -> nn.Module:
    if case.model == "minilm":
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(
            minilm_dir(), num_labels=num_classes
        )
    import torchvision

    return torchvision.models.resnet18(num_classes=num_classes)


def frozen_part_eval(model: nn.Module) -> None:
    """Every wholly frozen block (ResNet layer, BERT embeddings or layer) in eval mode."""
    blocks: list[nn.Module] = []
    for name, module in model.named_modules():
        is_block = name in ("conv1", "bn1") or re.fullmatch(
            r"layer\d|bert\.embeddings|bert\.encoder\.layer\.\d+", name
        )
        if is_block:
            blocks.append(module)
    for module in blocks:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


def move(inputs: Any, device: torch.device, conv: bool) -> Any:
    if isinstance(inputs, dict):
        return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
    fmt = torch.channels_last if conv and device.type == "cuda" else torch.contiguous_format
    return inputs.to(device, non_blocking=True, memory_format=fmt)


def logits(model: nn.Module, inputs: Any) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


def autocast(args: argparse.Namespace, device: torch.device) -> Any:
    if not args.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


# Report -------------------------------------------------------------------------------------


def phases(case: Case) -> list[list[int]]:
    """Epoch indices (0-based) grouped by phase: runs of equal trainable sets."""
    groups: list[list[int]] = []
    for i, names in enumerate(case.trainable):
        if groups and case.trainable[groups[-1][0]] == names:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def measure(case: Case, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    lines: list[str] = []
    for _ in range(args.rounds):
        hand = run_hand(case, args, tmp)
        cached = run_thaw(case, args, tmp, "auto")
        plain = run_thaw(case, args, tmp, "off") if args.with_off else None
        lines = [line for line in cached.lines if "cache" in line]
        rounds.append({"hand": hand, "thaw": cached.epochs(), "off": plain and plain.epochs()})
    kept = [key for key in ("hand", "thaw", "off") if rounds[0][key]]
    total = {key: median([sum(r[key]) for r in rounds]) for key in kept}
    per_phase = []
    for epochs in phases(case):
        hand = median([sum(r["hand"][e] for e in epochs) for r in rounds])
        thaw = median([sum(r["thaw"][e] for e in epochs) for r in rounds])
        per_phase.append({"epochs": [e + 1 for e in epochs], "ratio": hand / thaw})
    feature = [_mib(line) for line in lines if line.startswith("feature cache: phase")]
    decoded = [_mib(line) for line in lines if line.startswith("decoded-input cache")]
    return {
        "case": case.name,
        "hand_s": total["hand"],
        "thaw_s": total["thaw"],
        "off_s": total.get("off"),
        "ratio": total["hand"] / total["thaw"],
        "ratio_off": total["hand"] / total["off"] if "off" in total else None,
        "phases": per_phase,
        "target": case.target,
        "feature_cache_mib": max(feature, default=0.0),
        "decoded_cache_mib": sum(decoded),
        "log": lines,
    }


def _mib(line: str) -> float:
    found = re.search(r"\(([\d.]+) MiB", line)
    return float(found.group(1)) if found else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="head-only,layer4+fc,gradual,no-cache,minilm")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=400, help="PNG files written (0.2 val)")
    parser.add_argument("--texts", type=int, default=200, help="synthetic texts (0.2 val)")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both paths")
    parser.add_argument("--workers", type=int, default=0, help="hand loop DataLoader workers")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-off", dest="with_off", action="store_false",
                        help="skip the 'thaw (cache off)' runs")  # fmt: skip
    parser.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                        help="auto: process CPU time on cpu, wall time on cuda")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads; 0: 1 with the CPU clock")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu_clock = args.clock == "cpu" or (args.clock == "auto" and args.device == "cpu")
    CLOCK[0] = time.process_time if cpu_clock else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    elif cpu_clock:
        torch.set_num_threads(1)  # no OpenMP threads spinning under contention
    quiet_transformers()
    chosen = args.cases.split(",")
    cases = [
        c for c in (*_resnet_cases(args.epochs), _minilm_case(args.epochs)) if c.name in chosen
    ]
    print(
        f"device {args.device}, {torch.get_num_threads()} threads; resnet18 on {args.images} "
        f"digits-like {args.image_size} px PNGs, MiniLM on {args.texts} synthetic texts of "
        f"{args.max_length} tokens; batch {args.batch_size}; small datasets so that every case "
        f"runs in seconds on a 2-core CPU; {'process CPU' if cpu_clock else 'wall'} time"
    )
    results = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if any(c.model == "resnet18" for c in cases):
            write_digits(tmp / "datasets" / "digits", args.images, args.image_size)
        warm = argparse.Namespace(**{**vars(args), "rounds": 1, "with_off": False})
        measure(replace(cases[0], epochs=2, trainable=cases[0].trainable[:2]), warm, tmp)
        for case in cases:
            result = measure(case, args, tmp)
            results.append(result)
            report(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    missed = [r["case"] for r in results if r["target"] and r["ratio"] < r["target"]]
    if missed:
        print(f"below target: {', '.join(missed)}")
    return 0


def report(r: dict[str, Any]) -> None:
    off = f", thaw (cache off) {r['off_s']:.2f} s = {r['ratio_off']:.2f}x" if r["off_s"] else ""
    target = f" (target >= {r['target']}x)" if r["target"] else ""
    print(
        f"{r['case']:>10}: hand {r['hand_s']:.2f} s, thaw {r['thaw_s']:.2f} s = "
        f"{r['ratio']:.2f}x{target}{off}; feature cache {r['feature_cache_mib']:.1f} MiB, "
        f"decoded images {r['decoded_cache_mib']:.1f} MiB"
    )
    if len(r["phases"]) > 1:
        shown = ", ".join(f"epochs {p['epochs']}: {p['ratio']:.2f}x" for p in r["phases"])
        print(f"{'':>12}per phase: {shown}")
    for line in r["log"]:
        print(f"{'':>12}{line}")


if __name__ == "__main__":
    raise SystemExit(main())
