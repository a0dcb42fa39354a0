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

For ``head-only`` and ``layer4+fc`` also the expert's loop (bench/hand_loops.py: decode
once, the frozen backbone once under no_grad, the head trained on the cached tensor) against
the whole ``train()`` call, and ``thaw train`` against the hand loops as whole processes
(wall, CPU seconds, peak RSS); ``--load N`` runs the rounds beside N processes of fixed
CPU load. Rounds alternate the order of the paths.

Ratios are hand-loop seconds over Thaw seconds (training and validation, model build and
data loading excluded), median over ``--rounds``, after one short warmup run of each path;
seconds are process CPU time with one torch thread on a CPU (``--clock``, ``--threads``),
wall time on CUDA; cache memory from
Thaw's log.

    .venv/bin/python bench/feature_cache.py
    .venv/bin/python bench/feature_cache.py --cases head-only,minilm --rounds 3
    .venv/bin/python bench/feature_cache.py --cases head-only,layer4+fc,no-cache --rounds 5 --load 2
    .venv/bin/python bench/feature_cache.py --device cuda --image-size 224 --bf16 --images 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import ROOT, bench_settings, median, minilm_dir, quiet_transformers
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
    expert: str | None = None  # what the expert loop trains (fc | layer4), None: no such row


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
        Case("head-only", "resnet18", epochs, (head,) * epochs, only, target=4.5, expert="fc"),
        Case("layer4+fc", "resnet18", epochs, (top,) * epochs, top_rules, target=1.5,
             expert="layer4"),
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

    return JobSpec.model_validate(spec_body(case, args, feature_cache))


def spec_body(case: Case, args: argparse.Namespace, feature_cache: str) -> dict[str, Any]:
    if case.model == "minilm":
        base = {"source": "huggingface", "name": "model"}
        dataset: dict[str, Any] = {
            "synthetic": {"num_classes": 4, "num_examples": args.texts},
            "validation": {"split": 0.2},
        }
    else:
        base = {"source": "torchvision", "name": "resnet18"}
        dataset = {"path": "digits", "format": "image_folder", "validation": {"split": 0.2}}
    return {
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


# Thaw ---------------------------------------------------------------------------------------


class Clock:
    """Epoch start and end times, from the reporter hooks ``train()`` calls."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.end: dict[int, float] = {}
        self.lines: list[str] = []
        self.total = 0.0  # the whole train() call: data, caches, epochs, checkpoints

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        self.start.setdefault(epoch, CLOCK[0]())

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.end[epoch] = CLOCK[0]()

    def log(self, level: str, message: str) -> None:
        self.lines.append(message)

    def epochs(self) -> list[float]:
        return [self.end[e] - self.start[e] for e in sorted(self.end)]


def run_thaw(case: Case, args: argparse.Namespace, tmp: Path, cache: str) -> Clock:
    """``train()`` timed; its run folder stays in ``outputs/`` until the round ends."""
    from thaw.training import train
    from thaw.training.reporter import NullReporter

    class Reporter(Clock, NullReporter):
        pass

    reporter = Reporter()
    run = Path(tempfile.mkdtemp(dir=outputs(tmp)))
    start = CLOCK[0]()
    train(spec_for(case, args, cache), run, bench_settings(tmp), reporter, device=args.device)
    reporter.total = CLOCK[0]() - start
    return reporter


def outputs(tmp: Path) -> Path:
    """What the paths of a round save (Thaw's run folders, the scripts' state dicts), all
    removed together when the round ends: a save then never writes into the page cache that
    another path's removed output (or its own previous one) has just freed, which made
    whichever path ran next save faster on this machine."""
    folder = tmp / "outputs"
    folder.mkdir(exist_ok=True)
    return folder


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


def alternated(paths: list[str], round_index: int) -> list[str]:
    """The paths in this round's order: forwards in even rounds, backwards in odd ones, so
    that neither always runs first (warm caches, a load that rises or falls)."""
    return paths if round_index % 2 == 0 else paths[::-1]


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else "1 round"


def measure(case: Case, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    lines: list[str] = []
    paths = [
        "hand",
        "thaw",
        *(["expert"] if case.expert else []),
        *(["off"] if args.with_off else []),
    ]
    for index in range(args.rounds):
        times: dict[str, Any] = {}
        for path in alternated(paths, index):
            if path == "hand":
                times["hand"] = run_hand(case, args, tmp)
            elif path == "expert":
                times["expert"] = run_expert(case, args, tmp)
            else:
                clock = run_thaw(case, args, tmp, "auto" if path == "thaw" else "off")
                times[path], times[f"{path}_total"] = clock.epochs(), clock.total
                if path == "thaw":
                    lines = [line for line in clock.lines if "cache" in line]
        rounds.append(times)
        shutil.rmtree(outputs(tmp))
    kept = [key for key in ("hand", "thaw", "off") if key in rounds[0]]
    total = {key: median([sum(r[key]) for r in rounds]) for key in kept}
    ratios = [sum(r["hand"]) / sum(r["thaw"]) for r in rounds]
    per_phase = []
    for epochs in phases(case):
        hand = median([sum(r["hand"][e] for e in epochs) for r in rounds])
        thaw = median([sum(r["thaw"][e] for e in epochs) for r in rounds])
        per_phase.append({"epochs": [e + 1 for e in epochs], "ratio": hand / thaw})
    feature = [_mib(line) for line in lines if line.startswith("feature cache: phase")]
    decoded = [_mib(line) for line in lines if line.startswith("decoded-input cache")]
    result = {
        "case": case.name,
        "rounds": args.rounds,
        "load": args.load,
        "hand_s": total["hand"],
        "thaw_s": total["thaw"],
        "off_s": total.get("off"),
        "ratio": median(ratios),
        "ratio_spread": spread(ratios),
        "ratio_off": total["hand"] / total["off"] if "off" in total else None,
        "phases": per_phase,
        "target": case.target,
        "feature_cache_mib": max(feature, default=0.0),
        "decoded_cache_mib": sum(decoded),
        "log": lines,
    }
    if case.expert:
        expert = [r["expert"] / r["thaw_total"] for r in rounds]
        result["expert"] = {
            "expert_s": median([r["expert"] for r in rounds]),
            "thaw_s": median([r["thaw_total"] for r in rounds]),
            "ratio": median(expert),
            "ratio_spread": spread(expert),
            "target": 0.9 if args.load else 1.0,
        }
        if args.processes:
            result["processes"] = measure_processes(case, args, tmp)
    return result


# The expert loop and whole processes --------------------------------------------------------


def run_expert(case: Case, args: argparse.Namespace, tmp: Path) -> float:
    """Seconds of bench/hand_loops.py's expert loop in this process, end to end."""
    import hand_loops

    assert case.expert is not None
    start = CLOCK[0]()
    hand_loops.expert(
        tmp / "datasets" / "digits",
        case.expert,
        case.epochs,
        args.batch_size,
        args.image_size,
        Path(tempfile.mkdtemp(dir=outputs(tmp))) / "expert.pt",
    )
    return CLOCK[0]() - start


def measure_processes(case: Case, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``thaw train`` against the hand loops as scripts: wall seconds and peak RSS of each
    child process (imports, model build, data and all), rounds alternated."""
    assert case.expert is not None
    spec = tmp / f"{case.name}.json"
    spec.write_text(json.dumps(spec_body(case, args, "auto")))
    loops = [
        sys.executable, str(Path(__file__).with_name("hand_loops.py")), "--data",
        str(tmp / "datasets" / "digits"), "--trains", case.expert, "--epochs", str(case.epochs),
        "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
    ]  # fmt: skip
    saved = outputs(tmp)
    argv = {
        "thaw": [sys.executable, "-m", "thaw.cli", "train", str(spec), "--out",
                 str(saved / "thaw-run"), "--device", args.device],
        "expert": [loops[0], loops[1], "expert", *loops[2:], "--out", str(saved / "expert.pt")],
        "naive": [loops[0], loops[1], "naive", *loops[2:], "--out", str(saved / "naive.pt")],
    }  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "THAW_DATASETS_DIR": str(tmp / "datasets"),
        "THAW_DATA_DIR": str(tmp / "data"),
        "THAW_MODELS_DIR": str(minilm_dir().parent),
    }
    runs: dict[str, list[tuple[float, int, float]]] = {path: [] for path in argv}
    for index in range(args.rounds):
        outputs(tmp)
        for path in alternated(list(argv), index):
            runs[path].append(run_process(argv[path], env, tmp))
        shutil.rmtree(saved)
    out: dict[str, Any] = {}
    for path, got in runs.items():
        out[f"{path}_s"] = median([s for s, _, _ in got])
        out[f"{path}_mib"] = max(m for _, m, _ in got) / 2**20
        out[f"{path}_cpu_s"] = median([c for _, _, c in got])
    for path in ("expert", "naive"):
        ratios = [a[0] / b[0] for a, b in zip(runs[path], runs["thaw"], strict=True)]
        out[f"{path}_ratio"], out[f"{path}_spread"] = median(ratios), spread(ratios)
    return out


# Starts the command in a fork of a small process and reports its peak RSS and CPU seconds:
# a child started straight from this process would inherit this one's RSS high-water mark.
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss * 1024} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_process(argv: list[str], env: dict[str, str], tmp: Path) -> tuple[float, int, float]:
    """Wall seconds, peak resident bytes (ru_maxrss) and CPU seconds of one child process."""
    log, peak = tmp / "process.log", tmp / "process.maxrss"
    with log.open("wb") as out:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(peak), *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{log.read_text()}")
    rss, cpu = peak.read_text().split()
    return seconds, int(rss), float(cpu)


@contextlib.contextmanager
def background_load(count: int) -> Iterator[None]:
    """``count`` processes, each one thread multiplying a fixed 512x512 matrix in a loop,
    for as long as the block runs; each also ends once the bench is gone (killed before its
    ``finally`` ran)."""
    code = (
        "import os, torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
        f"while os.getppid() == {os.getpid()}: a @ a"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


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
    parser.add_argument("--load", type=int, default=0,
                        help="processes of fixed CPU load beside the rounds")  # fmt: skip
    parser.add_argument("--no-processes", dest="processes", action="store_false",
                        help="skip the whole-process rows (thaw train vs the scripts)")  # fmt: skip
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
        f"{args.max_length} tokens; batch {args.batch_size}; {args.rounds} rounds alternated, "
        f"medians [spread of the per-round ratios]; {'process CPU' if cpu_clock else 'wall'} "
        f"time in this process, wall time of whole processes; "
        f"{f'{args.load} background load processes' if args.load else 'no background load'}"
    )
    results = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if any(c.model == "resnet18" for c in cases):
            write_digits(tmp / "datasets" / "digits", args.images, args.image_size)
        warm = argparse.Namespace(
            **{**vars(args), "rounds": 1, "with_off": False, "processes": False}
        )
        short = min(2, cases[0].epochs)
        measure(replace(cases[0], epochs=short, trainable=cases[0].trainable[:short]), warm, tmp)
        with background_load(args.load):
            for case in cases:
                result = measure(case, args, tmp)
                results.append(result)
                report(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    missed = [r["case"] for r in results if r["target"] and r["ratio"] < r["target"]]
    missed += [
        f"{r['case']} vs expert"
        for r in results
        if "expert" in r and r["expert"]["ratio"] < r["expert"]["target"]
    ]
    if missed:
        print(f"below target: {', '.join(missed)}")
    return 0


def report(r: dict[str, Any]) -> None:
    off = f", thaw (cache off) {r['off_s']:.2f} s = {r['ratio_off']:.2f}x" if r["off_s"] else ""
    target = f" (target >= {r['target']}x)" if r["target"] else ""
    print(
        f"{r['case']:>10}: naive {r['hand_s']:.2f} s, thaw {r['thaw_s']:.2f} s = "
        f"{r['ratio']:.2f}x{target} [{r['ratio_spread']}]{off}; training and validation; "
        f"feature cache {r['feature_cache_mib']:.1f} MiB, decoded images "
        f"{r['decoded_cache_mib']:.1f} MiB"
    )
    if len(r["phases"]) > 1:
        shown = ", ".join(f"epochs {p['epochs']}: {p['ratio']:.2f}x" for p in r["phases"])
        print(f"{'':>12}per phase: {shown}")
    if "expert" in r:
        e = r["expert"]
        print(
            f"{'':>12}end to end: expert {e['expert_s']:.2f} s, thaw {e['thaw_s']:.2f} s = "
            f"{e['ratio']:.2f}x (target >= {e['target']}x) [{e['ratio_spread']}]"
        )
    if "processes" in r:
        p = r["processes"]
        shown = []
        for path, name in (("thaw", "thaw train"), ("expert", "expert"), ("naive", "naive")):
            row = f"{name} {p[f'{path}_s']:.2f} s (CPU {p[f'{path}_cpu_s']:.2f} s, "
            row += f"{p[f'{path}_mib']:.0f} MiB)"
            if path != "thaw":
                row += f" = {p[f'{path}_ratio']:.2f}x [{p[f'{path}_spread']}]"
            shown.append(row)
        print(f"{'':>12}processes (wall, CPU, peak RSS): {'; '.join(shown)}")
    for line in r["log"]:
        print(f"{'':>12}{line}")


if __name__ == "__main__":
    raise SystemExit(main())
