"""Training throughput: Thaw's trainer against a minimal hand-written PyTorch loop.

One process, one model and spec, the same synthetic dataset objects and DataLoader
settings for every path:

- ``hand``: the model built directly with torchvision / transformers, ``requires_grad``
  set with plain loops, frozen BatchNorm layers put in eval mode, one plain AdamW over the
  trainable parameters (a param group added at the thaw), cosine LR set by hand.
- ``engine``: Thaw's model build (``resolve``), ``FreezeEngine`` and ``make_loaders``,
  stepped exactly as ``thaw/training/run.py`` steps them (advance, autocast, GradScaler,
  before_step, optimizer step, after_step, zero_grad).
- ``train``: the real ``thaw.training.train`` on the synthetic dataset.

The paths are interleaved step by step, so that a load change on the machine falls on
all of them alike: ``train()`` runs, and its reporter's ``should_stop()`` (asked once per
step) runs one ``hand`` step and one ``engine`` step (order alternating) before handing
back. Each step is timed alone and synchronized (CUDA). Without the ``train`` path, a
plain loop alternates ``hand`` and ``engine`` steps. One warmup round, then ``--rounds``
measured rounds, each with freshly built models.

Figures per path: ``loop`` (every step, epoch boundaries included: loader start, phase
change; hand and engine) and ``in-epoch`` (every step but each epoch's first, with the
loading of its batch: the span that ``train()`` can be timed over from its reporter).

    .venv/bin/python bench/train_throughput.py                 # resnet18, 64 px, batch 32
    .venv/bin/python bench/train_throughput.py --model minilm  # MiniLM-L6, 32 tokens, batch 8
    .venv/bin/python bench/train_throughput.py --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import (
    MINILM,
    bench_settings,
    engine_step,
    examples_for,
    median,
    minilm_dir,
    now,
    quiet_transformers,
    spec_body,
    sync,
    trainable_prefixes,
)
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from thaw.training.reporter import NullReporter

TARGET = 0.97

# A stepper yields once per optimizer step: (batch size, first step of its epoch, loss).
Steps = Iterator[tuple[int, bool, torch.Tensor]]


# Measurement --------------------------------------------------------------------------------


@dataclass
class Track:
    """Per-step times of one path in one round."""

    path: str
    times: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    firsts: list[bool] = field(default_factory=list)
    first_loss: float | None = None

    def add(self, seconds: float, batch: int, first: bool) -> None:
        self.times.append(seconds)
        self.batches.append(batch)
        self.firsts.append(first)

    def loop_rate(self) -> float:
        return sum(self.batches) / sum(self.times) if self.times else float("nan")

    def in_epoch(self) -> list[tuple[float, int]]:
        return [
            (t, b) for t, b, f in zip(self.times, self.batches, self.firsts, strict=True) if not f
        ]

    def epoch_rate(self) -> float:
        kept = self.in_epoch()
        seconds = sum(t for t, _ in kept)
        return sum(b for _, b in kept) / seconds if seconds else float("nan")


def paired_ratios(path: Track, hand: Track, key: str) -> list[float]:
    """Per step pair (run next to each other in time): hand's seconds per sample over the
    path's. Robust to load bursts from other processes, which hit both of a pair alike."""
    if key == "loop":
        a, b = (
            list(zip(path.times, path.batches, strict=True)),
            list(zip(hand.times, hand.batches, strict=True)),
        )
    else:
        a, b = path.in_epoch(), hand.in_epoch()
    return [(th / bh) / (tp / bp) for (tp, bp), (th, bh) in zip(a, b, strict=False) if tp and th]


class Stepper:
    def __init__(self, track: Track, steps: Steps, device: torch.device):
        self.track = track
        self.steps = steps
        self.device = device

    def step(self) -> bool:
        start = now()
        try:
            batch, first, loss = next(self.steps)
        except StopIteration:
            return False
        sync(self.device)
        self.track.add(now() - start, batch, first)
        if self.track.first_loss is None:
            self.track.first_loss = float(loss)
        return True


# Shared setup -------------------------------------------------------------------------------


@dataclass
class Setup:
    args: argparse.Namespace
    spec: Any
    settings: Any
    data: Any
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    pin_memory: bool
    workers: int
    fused: bool
    steps_per_epoch: int


def make_setup(args: argparse.Namespace, tmp: Path) -> Setup:
    from thaw.spec import JobSpec
    from thaw.training.data_source import load_training_data
    from thaw.training.device import choose_placement
    from thaw.training.loaders import default_workers

    body = spec_body(
        args.model,
        num_classes=args.classes,
        num_examples=examples_for(args.steps, args.batch_size),
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        max_length=args.max_length,
        precision=args.precision,
        workers=args.workers,
    )
    spec = JobSpec.model_validate(body)
    settings = bench_settings(tmp)
    data = load_training_data(spec, settings, None)

    # The hand loop's own choice of device settings, written out; checked against Thaw's.
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype: torch.dtype | None = None
    if args.precision == "bf16" or (args.precision == "auto" and cuda):
        dtype = torch.bfloat16
    elif args.precision == "fp16":
        dtype = torch.float16
    conv = args.model != MINILM
    placement = choose_placement(args.precision, conv, args.device)
    mine = (device, dtype, cuda and conv, cuda)
    theirs = (
        placement.device,
        placement.autocast_dtype,
        placement.channels_last,
        placement.pin_memory,
    )
    if mine != theirs:
        print(f"note: hand placement {mine} differs from Thaw's {theirs}")
    return Setup(
        args=args,
        spec=spec,
        settings=settings,
        data=data,
        device=device,
        autocast_dtype=dtype,
        channels_last=cuda and conv,
        pin_memory=cuda,
        workers=default_workers(placement, spec.hyperparameters.num_workers),
        fused=cuda,
        steps_per_epoch=math.ceil(len(data.train) / args.batch_size),
    )


def _autocast(s: Setup) -> contextlib.AbstractContextManager[object]:
    if s.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(s.device.type, dtype=s.autocast_dtype)


def _to_device(s: Setup, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return {k: v.to(s.device, non_blocking=True) for k, v in inputs.items()}
    fmt = torch.channels_last if s.channels_last else torch.contiguous_format
    return inputs.to(s.device, non_blocking=True, memory_format=fmt)


def _logits(model: nn.Module, inputs: Any) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


# Path 1: the hand-written loop --------------------------------------------------------------


def build_hand_model(s: Setup) -> nn.Module:
    torch.manual_seed(s.spec.hyperparameters.seed)
    k = len(s.data.classes)
    if s.args.model == MINILM:
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging

        logging.set_verbosity_error()
        return AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=k)
    import torchvision.models as tvm

    model = tvm.get_model(s.args.model, weights=None)
    model.fc = nn.Linear(model.fc.in_features, k)
    return model


def _set_bn_modes(model: nn.Module) -> None:
    """Frozen BatchNorm layers keep their running statistics: eval mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def hand_steps(s: Setup) -> Steps:
    hp = s.spec.hyperparameters
    trainable, thaw = trainable_prefixes(s.args.model)
    model = build_hand_model(s).to(s.device)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(trainable))
    params = [p for p in model.parameters() if p.requires_grad]
    extra = {"fused": True} if s.fused else {}
    opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, **extra)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    gen = torch.Generator()
    loader = DataLoader(
        s.data.train,
        batch_size=hp.batch_size,
        sampler=RandomSampler(s.data.train, generator=gen),
        num_workers=s.workers,
        pin_memory=s.pin_memory,
        collate_fn=s.data.collate_fn,
        persistent_workers=s.workers > 0,
    )
    total = hp.epochs * s.steps_per_epoch
    step = 0
    yield 0, True, torch.zeros(())  # built; the driver starts timing from here
    for epoch in range(1, hp.epochs + 1):
        gen.manual_seed(hp.seed * 100_003 + epoch)
        if epoch == 2:
            new = [p for n, p in model.named_parameters() if n.startswith(thaw)]
            for p in new:
                p.requires_grad_(True)
            opt.add_param_group(
                {"params": new, "lr": hp.lr, "initial_lr": hp.lr, "weight_decay": hp.weight_decay}
            )
        model.train()
        _set_bn_modes(model)
        first = True
        for inputs, labels in loader:
            inputs, labels = _to_device(s, inputs), labels.to(s.device, non_blocking=True)
            with _autocast(s):
                loss = nn.functional.cross_entropy(_logits(model, inputs), labels)
            loss.backward()
            opt.step()
            step += 1
            factor = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / total)))
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * factor
            opt.zero_grad(set_to_none=True)
            yield int(labels.shape[0]), first, loss.detach()
            first = False


# Path 2: the FreezeEngine loop, stepped as run.py steps it ----------------------------------


def engine_steps(s: Setup) -> Steps:
    from thaw.data.shape import DataShape
    from thaw.freezing.engine import FreezeEngine
    from thaw.freezing.resolve import resolve
    from thaw.training.device import choose_placement
    from thaw.training.loaders import make_loaders

    hp = s.spec.hyperparameters
    torch.manual_seed(hp.seed)
    shape = DataShape(list(s.data.classes), len(s.data.train))
    resolved = resolve(s.spec, s.settings, shape, meta=False)
    placement = choose_placement(hp.precision, resolved.built.convolutional, s.args.device)
    model = resolved.built.model.to(placement.device)
    if placement.channels_last:
        model.to(memory_format=torch.channels_last)
    engine = FreezeEngine.from_resolved(resolved, fused=placement.device.type == "cuda")
    scaler = torch.amp.GradScaler(enabled=placement.use_scaler)
    train_loader, _, sampler = make_loaders(
        s.data.train,
        s.data.val,
        batch_size=hp.batch_size,
        seed=hp.seed,
        placement=placement,
        workers=s.workers,
        collate_fn=s.data.collate_fn,
    )
    step = 0
    yield 0, True, torch.zeros(())
    for epoch in range(1, resolved.timeline.epochs + 1):
        sampler.set_epoch(epoch)
        engine.advance(step)
        model.train()
        first = True
        for inputs, labels in train_loader:
            engine.advance(step)
            inputs, labels = _to_device(s, inputs), labels.to(s.device, non_blocking=True)
            loss = engine_step(model, engine, scaler, placement, inputs, labels)
            step += 1
            yield int(labels.shape[0]), first, loss
            first = False


def _started(s: Setup, path: str) -> Stepper:
    steps = hand_steps(s) if path == "hand" else engine_steps(s)
    next(steps)  # build model, optimizer and loader outside the timing
    return Stepper(Track(path), steps, s.device)


# Path 3: the real trainer, driving the others from its reporter ----------------------------


class DrivingReporter(NullReporter):
    """Times ``train()`` between its ``should_stop()`` calls, and steps the other paths
    inside those calls. Spans that cross an epoch boundary (validation, checkpoint, the
    loader's start) are left out, as the first step of each epoch is for the others."""

    def __init__(self, s: Setup, others: list[Stepper]):
        self.device = s.device
        self.track = Track("train")
        self.others = others
        self.batch_size = s.spec.hyperparameters.batch_size
        self.train_len = len(s.data.train)
        self.seen = 0
        self.calls = 0
        self.left_at: float | None = None
        self.pending_batch = 0

    def should_stop(self) -> bool:
        sync(self.device)
        entered = now()
        if self.left_at is not None:
            self.track.add(entered - self.left_at, self.pending_batch, False)
        # This call's batch: full batches from the sampler, then the remainder.
        left = self.train_len - self.seen % self.train_len
        self.pending_batch = min(self.batch_size, left)
        self.seen += self.pending_batch
        order = self.others if self.calls % 2 == 0 else self.others[::-1]
        for other in order:
            other.step()
        self.calls += 1
        self.left_at = now()
        return False

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        # Called before each epoch's first step and after each checkpoint.
        self.left_at = None

    def progress(self, progress: dict[str, Any]) -> None:
        if self.track.first_loss is None and "loss" in progress:
            self.track.first_loss = progress["loss"]

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.left_at = None


def run_round(s: Setup, paths: list[str], tmp: Path, round_no: int) -> dict[str, Track]:
    others = [_started(s, p) for p in paths if p != "train"]
    tracks = {o.track.path: o.track for o in others}
    if "train" in paths:
        from thaw.training import train

        reporter = DrivingReporter(s, others)
        start = now()
        result = train(s.spec, tmp / f"run-{round_no}", s.settings, reporter, device=s.args.device)
        assert result.status == "succeeded", result
        tracks["train"] = reporter.track
        wall = now() - start
        for o in others:  # train() may take fewer steps only if the data differ
            while o.step():
                pass
        tracks["_wall"] = Track("_wall", times=[wall])
    else:
        i = 0
        while True:
            order = others if i % 2 == 0 else others[::-1]
            if not all([o.step() for o in order]):
                break
            i += 1
    return tracks


# Checks that the paths do the same work -----------------------------------------------------


def check_same_work(s: Setup) -> None:
    """Same trainable set in every phase and same module modes in hand and Thaw paths."""
    from thaw.data.shape import DataShape
    from thaw.freezing.engine import FreezeEngine
    from thaw.freezing.resolve import resolve

    shape = DataShape(list(s.data.classes), len(s.data.train))
    resolved = resolve(s.spec, s.settings, shape, meta=False)
    engine = FreezeEngine.from_resolved(resolved)
    trainable, thaw = trainable_prefixes(s.args.model)
    hand = build_hand_model(s)
    problems = []
    for phase in range(len(resolved.timeline.phases)):
        if phase:
            engine.advance(resolved.timeline.phases[phase].start_step)
        prefixes = trainable + (thaw if phase else ())
        for name, p in hand.named_parameters():
            p.requires_grad_(name.startswith(prefixes))
        mine = {n for n, p in hand.named_parameters() if p.requires_grad}
        theirs = {n for n, p in engine.model.named_parameters() if p.requires_grad}
        if mine != theirs:
            problems.append(f"phase {phase}: trainable sets differ by {sorted(mine ^ theirs)[:5]}")
        hand.train()
        _set_bn_modes(hand)
        engine.model.train()
        hand_modes = {n: m.training for n, m in hand.named_modules()}
        thaw_modes = {n: m.training for n, m in engine.model.named_modules()}
        if hand_modes != thaw_modes:
            diff = [n for n in hand_modes if hand_modes[n] != thaw_modes.get(n)]
            problems.append(f"phase {phase}: module train/eval modes differ: {diff[:5]}")
    hand_n = sum(p.numel() for p in hand.parameters())
    thaw_n = sum(p.numel() for p in engine.model.parameters())
    if hand_n != thaw_n:
        problems.append(f"parameter counts differ: {hand_n} vs {thaw_n}")
    if problems:
        raise SystemExit("the paths would not do the same work:\n  " + "\n  ".join(problems))
    print(f"same work: {len(resolved.timeline.phases)} phases; trainable sets and modes match")


# Main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet18", help="resnet18 (default), resnet50, minilm")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--steps", type=int, default=None, help="steps per epoch (6; MiniLM 4)")
    p.add_argument("--epochs", type=int, default=3, help="layer3 thaws at epoch 2")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (MiniLM 8)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=None, help="MiniLM tokens (32)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (Thaw default)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds after one warmup")
    p.add_argument("--paths", default="hand,engine,train", help="comma-separated subset")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = p.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 8 if args.model == MINILM else 32
    if args.max_length is None:
        args.max_length = 32
    if args.steps is None:
        args.steps = 4 if args.model == MINILM else 6
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.model == MINILM:
        quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    if "hand" not in paths:
        raise SystemExit("--paths must include hand (the baseline)")

    with tempfile.TemporaryDirectory(prefix="thaw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        s = make_setup(args, tmp)
        print(
            f"model={args.model} device={s.device} autocast={s.autocast_dtype} "
            f"channels_last={s.channels_last} pin_memory={s.pin_memory} workers={s.workers} "
            f"threads={torch.get_num_threads()} batch={args.batch_size} "
            f"train_examples={len(s.data.train)} steps/epoch={s.steps_per_epoch} "
            f"epochs={args.epochs} torch={torch.__version__}"
        )
        check_same_work(s)
        load = os.getloadavg()
        print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        rounds: list[dict[str, Track]] = []
        for r in range(args.rounds + 1):
            tracks = run_round(s, paths, tmp, r)
            label = "warmup" if r == 0 else f"round {r}"
            line = [f"{label:8}"]
            for path in paths:
                t = tracks[path]
                loop = f" loop {t.loop_rate():7.1f}" if path != "train" else ""
                line.append(f"{path}{loop} in-epoch {t.epoch_rate():7.1f}")
            if "_wall" in tracks:
                line.append(f"train() wall {tracks['_wall'].times[0]:.2f} s")
            print(" | ".join(line), flush=True)
            losses = {p: tracks[p].first_loss for p in paths}
            if r == 0:
                note = " (dropout draws differ)" if args.model == MINILM else ""
                print(f"first-step losses (same init, same batch){note}: {losses}")
            else:
                rounds.append(tracks)
        report(rounds, paths, args)
    return 0


def report(rounds: list[dict[str, Track]], paths: list[str], args: argparse.Namespace) -> None:
    summary: dict[str, Any] = {"model": args.model, "device": args.device, "samples_per_s": {}}
    print(f"\nsamples/s, median of {len(rounds)} rounds:")
    for path in paths:
        loop = median([r[path].loop_rate() for r in rounds]) if path != "train" else None
        epoch = median([r[path].epoch_rate() for r in rounds])
        summary["samples_per_s"][path] = {"loop": loop, "in_epoch": epoch}
        loop_text = f"loop {loop:7.1f}" if loop is not None else " " * 12
        print(f"  {path:6} {loop_text}   in-epoch {epoch:7.1f}")
    checks = [("engine", "loop"), ("engine", "in_epoch"), ("train", "in_epoch")]
    summary["ratios"] = {}
    for path, key in checks:
        if path not in paths:
            continue

        def rate(track: Track, key: str = key) -> float:
            return track.loop_rate() if key == "loop" else track.epoch_rate()

        per_round = [rate(r[path]) / rate(r["hand"]) for r in rounds]
        ratio = median(per_round)
        pairs = [x for r in rounds for x in paired_ratios(r[path], r["hand"], key)]
        paired = median(pairs)
        name = f"{path}/hand ({key.replace('_', '-')})"
        summary["ratios"][name] = {"median_of_rounds": ratio, "rounds": per_round}
        summary["ratios"][name]["median_of_step_pairs"] = paired
        verdict = "ok" if max(ratio, paired) >= TARGET else f"BELOW {TARGET}"
        shown = " ".join(f"{x:.3f}" for x in per_round)
        print(
            f"  {name:24} rounds {ratio:.3f} ({shown})  step pairs {paired:.3f} "
            f"(n={len(pairs)})  target >= {TARGET}: {verdict}"
        )
    load = os.getloadavg()
    summary["loadavg_end"] = load
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
