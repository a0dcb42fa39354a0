"""Plan latency: the dry run of a spec (what POST /v1/plans and ``thaw plan`` compute).

For each model, in a fresh Python process: the import time of the planning modules, the
first (cold) plan, then warm plans; each plan is ``JobSpec.model_validate`` (the request
body) + ``resolve_spec`` (dataset shape, the meta model from the shared cache, selectors and
timeline: the one path of ``thaw plan`` and the API) + ``plan_table``, timed in parts. Then
``python -m thaw.cli plan spec.json`` wall clock as a subprocess, imports included.

    .venv/bin/python bench/plan_latency.py                    # resnet50, minilm, three timm
    .venv/bin/python bench/plan_latency.py --models resnet50 --repeat 50
    .venv/bin/python bench/plan_latency.py --models timm:convnext_tiny
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, bench_settings, median, minilm_dir, spec_body

TARGET_MS = 100.0
TIMM = ("timm:convnext_tiny", "timm:vit_small_patch16_224", "timm:efficientnet_b0")
TARGETED = ("resnet50", *TIMM)
DEFAULT_MODELS = ",".join(("resnet50", "minilm", *TIMM))


def body_for(model: str) -> dict[str, Any]:
    if model.startswith("timm:"):
        return timm_body(model.removeprefix("timm:"))
    return spec_body(
        model,
        num_classes=10,
        num_examples=640,
        epochs=3,
        batch_size=32,
        image_size=224,
        max_length=128,
        precision="auto",
        workers=None,
    )


def timm_body(name: str) -> dict[str, Any]:
    """A timm model by name (no weights): top two groups train, the next thaws at epoch 2."""
    body = body_for("resnet50")
    body["name"] = f"bench-timm-{name}"
    body["base_model"] = {"source": "timm", "name": name}
    body["freeze"]["rules"] = [{"match": "group:-2:", "trainable": True}]
    body["schedule"] = [{"at_epoch": 2, "unfreeze": ["group:-3"]}]
    return body


def child(model: str, repeat: int) -> dict[str, Any]:
    """Runs in a fresh process: imports, one cold plan, ``repeat`` warm plans."""
    t0 = time.perf_counter()
    from thaw.freezing.plan import plan_table
    from thaw.spec import JobSpec
    from thaw.submit import resolve_spec

    imported = time.perf_counter() - t0
    body = body_for(model)
    with tempfile.TemporaryDirectory(prefix="thaw-bench-") as tmp:
        settings = bench_settings(Path(tmp))

        def plan() -> dict[str, float]:
            a = time.perf_counter()
            spec = JobSpec.model_validate(body)
            b = time.perf_counter()
            resolved = resolve_spec(spec, settings)
            d = time.perf_counter()
            table = plan_table(resolved)
            e = time.perf_counter()
            json.dumps(table)
            f = time.perf_counter()
            return {
                "validate": b - a,
                "resolve": d - b,
                "plan_table": e - d,
                "json": f - e,
                "total": f - a,
            }

        cold = plan()
        warm = [plan() for _ in range(repeat)]
    ms = {k: 1000 * median([w[k] for w in warm]) for k in warm[0]}
    return {
        "model": model,
        "import_ms": 1000 * imported,
        "cold_ms": {k: 1000 * v for k, v in cold.items()},
        "warm_ms_median": ms,
        "warm_ms_min": 1000 * min(w["total"] for w in warm),
        "warm_ms_max": 1000 * max(w["total"] for w in warm),
        "repeat": repeat,
    }


def env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "THAW_MODELS_DIR": str(minilm_dir().parent),
    }


def in_fresh_process(model: str, repeat: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", model, "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"plan of {model} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_wall(model: str, runs: int, tmp: Path) -> list[float]:
    path = tmp / f"{model.replace(':', '-')}.json"
    path.write_text(json.dumps(body_for(model)))
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "thaw.cli", "plan", str(path)],
            capture_output=True,
            text=True,
            env={**env(), "THAW_DATA_DIR": str(tmp / "data")},
            cwd=tmp,
            timeout=300,
            check=False,
        )
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"thaw plan {model} failed:\n{done.stderr}")
        json.loads(done.stdout)
    return walls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--repeat", type=int, default=20, help="warm plans per model")
    p.add_argument("--cli-runs", type=int, default=3, help="thaw plan subprocess runs")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.repeat)))
        return 0

    results: dict[str, Any] = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix="thaw-bench-") as tmp_name:
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            r = in_fresh_process(model, args.repeat)
            r["cli_wall_s"] = cli_wall(model, args.cli_runs, Path(tmp_name))
            results[model] = r
            warm, cold = r["warm_ms_median"], r["cold_ms"]
            parts = ", ".join(f"{k} {v:.1f}" for k, v in warm.items() if k != "total")
            print(f"{model}:")
            print(f"  {'imports (planning modules, torch)':38} {r['import_ms']:8.1f} ms")
            cold_parts = ", ".join(f"{k} {v:.1f}" for k, v in cold.items() if k != "total")
            print(f"  {'cold plan (first in process)':38} {cold['total']:8.1f} ms  ({cold_parts})")
            print(
                f"  {'warm plan, median of ' + str(r['repeat']):38} {warm['total']:8.1f} ms  "
                f"(min {r['warm_ms_min']:.1f}, max {r['warm_ms_max']:.1f}; {parts})"
            )
            walls = " ".join(f"{w:.2f}" for w in r["cli_wall_s"])
            print(f"  {'python -m thaw.cli plan, wall':38} {walls} s")
            if model in TARGETED:
                verdict = "ok" if warm["total"] < TARGET_MS else "OVER"
                ok = ok and warm["total"] < TARGET_MS
                print(f"  warm {model} plan < {TARGET_MS:.0f} ms: {verdict}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
