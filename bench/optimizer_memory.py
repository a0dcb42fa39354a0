"""Memory of frozen layers: optimizer state and activations saved for backward.

1. Optimizer state after real steps through ``FreezeEngine`` (both freeze methods, both
   phases of the benchmark spec: top block + head, then the block below thawed), against
   a naive ``AdamW(model.parameters())`` on the fully trainable model, and against a plain
   ``AdamW(model.parameters())`` with the frozen parameters' ``requires_grad`` off.
2. Activation bytes saved for backward in one forward + loss, counted with
   ``torch.autograd.graph.saved_tensors_hooks`` and attributed to the model's layer groups
   (parameters that autograd keeps a reference to are not counted: they cost nothing
   extra), for the fully trainable model, Thaw's frozen prefix, the phase after the thaw,
   and the ``zero_lr`` method (frozen by a zero learning rate, so autograd sees them as
   trainable).

    .venv/bin/python bench/optimizer_memory.py                  # resnet18, 64 px, batch 32
    .venv/bin/python bench/optimizer_memory.py --model minilm   # all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from common import MINILM, bench_settings, fmt_bytes, quiet_transformers, spec_body
from torch import nn

CLASSES = 10


# Setup --------------------------------------------------------------------------------------


def make_spec(args: argparse.Namespace, method: str) -> Any:
    from thaw.spec import JobSpec

    body = spec_body(
        args.model,
        num_classes=CLASSES,
        num_examples=64,
        epochs=2,
        batch_size=args.batch_size,
        image_size=args.image_size,
        max_length=args.max_length,
        precision="fp32",
        workers=0,
    )
    body["freeze"]["method"] = method
    return JobSpec.model_validate(body)


def resolved_model(args: argparse.Namespace, spec: Any, settings: Any) -> Any:
    from thaw.data.shape import DataShape
    from thaw.freezing.resolve import resolve

    torch.manual_seed(0)
    # One step per epoch: the thaw at epoch 2 starts at step 1.
    shape = DataShape([str(i) for i in range(CLASSES)], args.batch_size)
    return resolve(spec, settings, shape, meta=False)


def batch(args: argparse.Namespace, model: nn.Module) -> tuple[Any, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, CLASSES, (args.batch_size,), generator=g)
    if args.model == MINILM:
        vocab = model.config.vocab_size
        ids = torch.randint(1000, vocab, (args.batch_size, args.max_length), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)
    return x, labels


def loss_of(model: nn.Module, inputs: Any, labels: torch.Tensor) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    logits = out.logits if hasattr(out, "logits") else out
    return nn.functional.cross_entropy(logits, labels)


# Optimizer state ----------------------------------------------------------------------------


def state_size(opt: torch.optim.Optimizer) -> tuple[int, int, int]:
    """(parameters with state, state tensors, state bytes)."""
    tensors = nbytes = 0
    for state in opt.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                tensors += 1
                nbytes += value.numel() * value.element_size()
    return len(opt.state), tensors, nbytes


def adam_bytes(params: list[nn.Parameter]) -> int:
    """exp_avg + exp_avg_sq at the parameter's size, plus one float32 step per parameter."""
    return sum(2 * p.numel() * p.element_size() + 4 for p in params)


def optimizer_rows(args: argparse.Namespace, settings: Any) -> list[dict[str, Any]]:
    from thaw.freezing.engine import FreezeEngine

    rows: list[dict[str, Any]] = []
    for method in ("requires_grad", "zero_lr"):
        spec = make_spec(args, method)
        r = resolved_model(args, spec, settings)
        engine = FreezeEngine.from_resolved(r)
        model = engine.model
        inputs, labels = batch(args, model)
        for phase in range(len(r.timeline.phases)):
            engine.advance(phase)  # one step per epoch: phase 1 starts at step 1
            model.train()
            loss_of(model, inputs, labels).backward()
            engine.before_step()
            engine.optimizer.step()
            engine.after_step()
            engine.optimizer.zero_grad(set_to_none=True)
            trainable = r.timeline.phases[phase].trainable
            with_state = {id(p) for p in engine.optimizer.state}
            frozen_with_state = [
                n for n, p in r.index.params.items() if not trainable[n] and id(p) in with_state
            ]
            live = [p for n, p in r.index.params.items() if trainable[n]]
            n_params, n_tensors, n_bytes = state_size(engine.optimizer)
            rows.append(
                {
                    "config": f"engine {method}, phase {phase}",
                    "trainable_params": sum(p.numel() for p in live),
                    "params_with_state": n_params,
                    "state_tensors": n_tensors,
                    "state_bytes": n_bytes,
                    "expected_bytes": adam_bytes(live),
                    "frozen_with_state": len(frozen_with_state),
                }
            )
        del engine, model, r

    for label, all_trainable in (
        ("naive AdamW, all trainable", True),
        ("plain AdamW(all), frozen requires_grad off", False),
    ):
        spec = make_spec(args, "requires_grad")
        r = resolved_model(args, spec, settings)
        model = r.index.model
        first = r.timeline.phases[0].trainable
        for n, p in r.index.params.items():
            p.requires_grad_(all_trainable or first[n])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        inputs, labels = batch(args, model)
        loss_of(model, inputs, labels).backward()
        opt.step()
        live = [p for p in model.parameters() if p.requires_grad]
        n_params, n_tensors, n_bytes = state_size(opt)
        with_state = {id(p) for p in opt.state}
        rows.append(
            {
                "config": label,
                "trainable_params": sum(p.numel() for p in live),
                "params_with_state": n_params,
                "state_tensors": n_tensors,
                "state_bytes": n_bytes,
                "expected_bytes": adam_bytes(live),
                "frozen_with_state": sum(
                    1 for n, p in r.index.params.items() if not first[n] and id(p) in with_state
                )
                if not all_trainable
                else 0,
            }
        )
    return rows


# Saved activations --------------------------------------------------------------------------


class SavedCounter:
    """Bytes that autograd saves for backward, per layer group of the model."""

    def __init__(self, index: Any):
        self.current = "input"
        # Parameters saved for backward (a conv keeps its weight) cost no extra memory.
        self._params = {p.untyped_storage().data_ptr() for p in index.model.parameters()}
        self.param_refs: dict[str, int] = defaultdict(int)
        self.raw: dict[str, int] = defaultdict(int)
        self.unique: dict[str, int] = defaultdict(int)
        self.count: dict[str, int] = defaultdict(int)
        self._seen: set[int] = set()
        self._handles = []
        for group in index.groups:
            for module in group.modules:
                sub = index.model.get_submodule(module)
                self._handles.append(sub.register_forward_pre_hook(self._enter(group.name)))

    def _enter(self, name: str):
        def hook(module: nn.Module, args: Any) -> None:
            self.current = name

        return hook

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() in self._params:
            self.param_refs[self.current] += 1
            return t
        self.count[self.current] += 1
        self.raw[self.current] += t.numel() * t.element_size()
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._seen:
            self._seen.add(storage.data_ptr())
            self.unique[self.current] += storage.nbytes()
        return t

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def saved_for(args: argparse.Namespace, settings: Any, config: str) -> SavedCounter:
    from thaw.freezing.engine import FreezeEngine

    method = "zero_lr" if config == "zero_lr" else "requires_grad"
    spec = make_spec(args, method)
    r = resolved_model(args, spec, settings)
    model = r.index.model
    if config == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
    else:
        engine = FreezeEngine.from_resolved(r)
        if config == "thawed":
            engine.advance(1)
        model.train()
    inputs, labels = batch(args, model)
    counter = SavedCounter(r.index)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
        counter.current = "loss"
        logits = out.logits if hasattr(out, "logits") else out
        loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    counter.close()
    counter.groups = [g.name for g in r.index.groups]  # type: ignore[attr-defined]
    return counter


# Main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet18", help="a torchvision ResNet or minilm")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.model == MINILM:
        quiet_transformers()
    torch.set_grad_enabled(True)
    out: dict[str, Any] = {"model": args.model}

    with tempfile.TemporaryDirectory(prefix="thaw-bench-") as tmp:
        settings = bench_settings(Path(tmp))
        rows = optimizer_rows(args, settings)
        naive = next(r for r in rows if r["config"].startswith("naive"))
        print(f"optimizer state after steps ({args.model}, AdamW):")
        header = (
            f"  {'config':44} {'trainable':>11} {'w/ state':>8} {'tensors':>7} "
            f"{'bytes':>11} {'expected':>11} {'vs naive':>8} {'frozen w/ state':>15}"
        )
        print(header)
        for r in rows:
            r["ratio_to_naive"] = r["state_bytes"] / naive["state_bytes"]
            print(
                f"  {r['config']:44} {r['trainable_params']:>11,} {r['params_with_state']:>8} "
                f"{r['state_tensors']:>7} {fmt_bytes(r['state_bytes']):>11} "
                f"{fmt_bytes(r['expected_bytes']):>11} {r['ratio_to_naive']:>8.3f} "
                f"{r['frozen_with_state']:>15}"
            )
        ok = all(
            r["frozen_with_state"] == 0 and r["state_bytes"] == r["expected_bytes"] for r in rows
        )
        print(f"  frozen parameters hold no optimizer state: {'yes' if ok else 'NO'}")
        out["optimizer"] = rows

        configs = {
            "full": "all trainable",
            "prefix": "frozen prefix (phase 0)",
            "thawed": "after thaw (phase 1)",
            "zero_lr": "zero_lr method (phase 0)",
        }
        counters = {c: saved_for(args, settings, c) for c in configs}
    groups = [*counters["full"].groups, "loss"]  # type: ignore[attr-defined]
    print(f"\nactivation bytes saved for backward, one forward + loss, batch {args.batch_size}:")
    print(f"  {'group':24}" + "".join(f"{configs[c]:>26}" for c in configs))
    for g in groups:
        cells = "".join(f"{fmt_bytes(counters[c].unique.get(g, 0)):>26}" for c in configs)
        print(f"  {g:24}{cells}")
    totals = {c: sum(counters[c].unique.values()) for c in configs}
    print(
        f"  {'total (unique storages)':24}"
        + "".join(f"{fmt_bytes(totals[c]):>26}" for c in configs)
    )
    raw = {c: sum(counters[c].raw.values()) for c in configs}
    print(f"  {'total (every save)':24}" + "".join(f"{fmt_bytes(raw[c]):>26}" for c in configs))
    print(
        f"  {'ratio to all trainable':24}"
        + "".join(f"{totals[c] / totals['full']:>26.3f}" for c in configs)
    )
    prefix_groups = groups[: groups.index(_first_trainable_group(args))]
    stored = {g: counters["prefix"].unique.get(g, 0) for g in prefix_groups}
    frozen_ok = all(v == 0 for v in stored.values())
    print(
        f"  frozen prefix ({', '.join(prefix_groups)}) stores no activations: "
        f"{'yes' if frozen_ok else 'NO: ' + str(stored)}"
    )
    out["saved_bytes"] = {
        c: {"total_unique": totals[c], "total_raw": raw[c], "by_group": dict(counters[c].unique)}
        for c in configs
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if ok and frozen_ok else 1


def _first_trainable_group(args: argparse.Namespace) -> str:
    return "bert.encoder.layer.4" if args.model == MINILM else "layer4"


if __name__ == "__main__":
    raise SystemExit(main())
