"""Checkpoint share of training wall time: saves on the training thread (``inline``, as
before) against a snapshot then a background write and fenced commit (``background``).

The real ``thaw.training.train`` on a synthetic dataset, resnet18 with layer4 and fc
trainable (the feature cache on, so epochs are short and a save is a large part of them),
a checkpoint every epoch. ``inline`` swaps the trainer's BackgroundCommit for one that
runs the write at once on the training thread. Figures per mode: the wall time of
``train()`` and the time the training thread spent in checkpoint calls (snapshot, waiting
for the previous commit, and inline the whole write, fsync and publish), as a share of
it. Modes alternate, one warmup round, then ``--rounds`` measured rounds.

    .venv/bin/python bench/checkpoint_share.py
    .venv/bin/python bench/checkpoint_share.py --epochs 6 --steps 6 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import examples_for, median, now, spec_body

from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import background_commit, run, train


class InlineCommit(background_commit.BackgroundCommit):
    """The save as it was: written and committed on the training thread, in submit()."""

    def submit(self, work: Any, then: Any) -> None:
        self.wait()
        then(work())


class Clock:
    def __init__(self) -> None:
        self.blocked = 0.0
        self._depth = 0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        self._depth += 1
        started = now()
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.blocked += now() - started


def _timed(clock: Clock, fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.timing():
            return fn(*args, **kwargs)

    return wrapper


def measure(mode: str, args: argparse.Namespace, tmp: Path) -> tuple[float, float]:
    """``(wall seconds of train(), seconds the training thread spent in checkpoint calls)``."""
    body = spec_body(
        "resnet18",
        num_classes=10,
        num_examples=examples_for(args.steps, args.batch_size),
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        max_length=32,
        precision="fp32",
        workers=0,
    )
    body["schedule"] = []
    body["hyperparameters"]["feature_cache"] = "auto"
    body["checkpointing"] = {"every_epochs": 1, "keep_last": 2}
    spec = JobSpec.model_validate(body)
    clock = Clock()
    commit_cls = InlineCommit if mode == "inline" else background_commit.BackgroundCommit
    saved = (run.BackgroundCommit, run._Run._checkpoint, commit_cls.wait)
    run.BackgroundCommit = commit_cls  # type: ignore[misc]
    run._Run._checkpoint = _timed(clock, saved[1])  # type: ignore[method-assign]
    commit_cls.wait = _timed(clock, saved[2])  # type: ignore[method-assign]
    try:
        started = now()
        train(spec, tmp / f"run-{mode}-{now()}", Settings(data_dir=tmp / "data"))
        wall = now() - started
    finally:
        run.BackgroundCommit, run._Run._checkpoint, commit_cls.wait = saved  # type: ignore[misc]
    return wall, clock.blocked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results: dict[str, list[tuple[float, float]]] = {"inline": [], "background": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds + 1):
            order = ("inline", "background") if round_ % 2 == 0 else ("background", "inline")
            for mode in order:
                wall, blocked = measure(mode, args, Path(tmp))
                if round_ > 0:
                    results[mode].append((wall, blocked))
    print(f"resnet18 layer4+fc, {args.image_size} px, {args.epochs} epochs x {args.steps} steps")
    print("| mode | train() wall s | in checkpoint calls s | checkpoint share |")
    print("|---|---|---|---|")
    for mode, rows in results.items():
        wall = median([w for w, _ in rows])
        blocked = median([b for _, b in rows])
        share = median([b / w for w, b in rows])
        print(f"| {mode} | {wall:.2f} | {blocked:.2f} | {share:.1%} |")


if __name__ == "__main__":
    main()
