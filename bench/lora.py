"""LoRA vs requires_grad on MiniLM: trainable parameters, optimizer state and step time.

Three specs over the same model, batch and seed, each through ``resolve`` and
``FreezeEngine`` as the trainer runs them (feature cache off, so every step runs the whole
model): ``lora`` (r 8 adapters on every layer's query and value, the head), ``requires_grad
top`` (the benchmark spec of common.py: encoder layers 4-5, pooler, head) and
``requires_grad all`` (every parameter trains). Step times are medians over rounds in
which each config takes one step in turn, so load on the machine falls on all alike;
ratios are against ``requires_grad all``.

    .venv/bin/python bench/lora.py                      # batch 8, 64 tokens, 12 rounds
    .venv/bin/python bench/lora.py --rounds 30 --max-length 128
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import MINILM, bench_settings, fmt_bytes, median, now, quiet_transformers, spec_body
from torch import nn

CLASSES = 4
QUERY_VALUE = r"re:bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)"


def spec_for(config: str, args: argparse.Namespace) -> Any:
    from thaw.spec import JobSpec

    body = spec_body(
        MINILM,
        num_classes=CLASSES,
        num_examples=64,
        epochs=1,
        batch_size=args.batch_size,
        image_size=224,
        max_length=args.max_length,
        precision="fp32",
        workers=0,
    )
    if config == "lora":
        body["freeze"] = {
            "method": "lora",
            "adapter": {"r": args.rank, "alpha": 2 * args.rank, "targets": [QUERY_VALUE]},
        }
    elif config == "requires_grad all":
        body["freeze"] = {"default": "trainable"}
    return JobSpec.model_validate(body)


def engine_for(config: str, args: argparse.Namespace, settings: Any) -> Any:
    from thaw.data.shape import DataShape
    from thaw.freezing.engine import FreezeEngine
    from thaw.freezing.resolve import resolve

    torch.manual_seed(0)
    shape = DataShape([str(i) for i in range(CLASSES)], 64)
    return FreezeEngine.from_resolved(resolve(spec_for(config, args), settings, shape, meta=False))


def batch(args: argparse.Namespace, model: nn.Module) -> tuple[dict[str, torch.Tensor], Any]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(
        1000, model.config.vocab_size, (args.batch_size, args.max_length), generator=g
    )
    labels = torch.randint(0, CLASSES, (args.batch_size,), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels


def step(engine: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> float:
    started = now()
    logits = engine.model(**inputs).logits
    nn.functional.cross_entropy(logits, labels).backward()
    engine.before_step()
    engine.optimizer.step()
    engine.after_step()
    engine.optimizer.zero_grad(set_to_none=True)
    return now() - started


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values()
        for v in state.values()
        if torch.is_tensor(v)
    )


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    configs = ("lora", "requires_grad top", "requires_grad all")
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp))
        engines = {c: engine_for(c, args, settings) for c in configs}
    inputs, labels = batch(args, engines["lora"].model)
    for engine in engines.values():
        engine.model.train()
        for _ in range(args.warmup):
            step(engine, inputs, labels)
    times: dict[str, list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for config, engine in engines.items():
            times[config].append(step(engine, inputs, labels))
    full = engines["requires_grad all"]
    full_params = sum(p.numel() for p in full.index.params.values() if p.requires_grad)
    full_state, full_time = state_bytes(full.optimizer), median(times["requires_grad all"])
    rows = []
    for config, engine in engines.items():
        trainable = sum(p.numel() for p in engine.index.params.values() if p.requires_grad)
        state = state_bytes(engine.optimizer)
        rows.append(
            {
                "config": config,
                "trainable_params": trainable,
                "trainable_vs_all": round(trainable / full_params, 4),
                "optimizer_state_bytes": state,
                "optimizer_state": fmt_bytes(state),
                "state_vs_all": round(state / full_state, 4),
                "step_ms": round(median(times[config]) * 1000, 1),
                "step_vs_all": round(median(times[config]) / full_time, 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    quiet_transformers()
    rows = run(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| config | trainable params | vs all | optimizer state | vs all | step | vs all |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['config']} | {r['trainable_params']:,} | {r['trainable_vs_all']} | "
            f"{r['optimizer_state']} | {r['state_vs_all']} | {r['step_ms']} ms | "
            f"{r['step_vs_all']} |"
        )


if __name__ == "__main__":
    main()
