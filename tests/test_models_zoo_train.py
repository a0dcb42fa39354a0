"""timm and Hugging Face image classifiers trained through the API by a real worker.

Each tiny model (built and saved locally, no download) trains 2 epochs on scikit-learn
digits with its lower half of layer groups frozen; its checkpoint then loads in the
model's own library and through ``thaw.load_model`` with the same predictions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import torch
from api_fixtures import ApiServer, ApiServers
from digits import write_digits_folder
from redis_server import RedisDatabases
from safetensors.torch import load_file
from support import bits_equal
from worker_fixtures import Stack
from zoo_models import (
    HF_MEAN,
    HF_STD,
    HF_VIT_FOLDER,
    TIMM_RESNET,
    TIMM_RESNET_FILE,
    TIMM_VIT_ARGS,
    TIMM_VIT_FOLDER,
    write_hf_vit,
    write_timm_resnet,
    write_timm_vit,
)

import thaw
from thaw.checkpoints import find_checkpoint

pytestmark = pytest.mark.slow

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CLASSES = sorted(WORDS)
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class Zoo:
    def __init__(self, api: ApiServer, stack: Stack):
        self.api = api
        self.stack = stack
        self.http = api.client()

    def groups(self, source: str, name: str) -> list[dict[str, Any]]:
        response = self.http.get(
            "/v1/models/layers", params={"source": source, "name": name, "num_classes": 10}
        )
        assert response.status_code == 200, response.text
        return response.json()["groups"]

    def run(self, base_model: dict[str, Any], image_size: int, lr: float) -> tuple[str, int]:
        """Submit with the lower half of the groups frozen; returns the job id and the
        number of frozen groups."""
        groups = self.groups(base_model["source"], base_model["name"])
        half = len(groups) // 2
        body = {
            "name": f"zoo-{base_model['name']}",
            "base_model": base_model,
            "dataset": {"path": "digits", "validation": {"split": 0.2}},
            "freeze": {
                "default": "trainable",
                "rules": [{"match": f"group:0:{half}", "trainable": False}],
            },
            "hyperparameters": {
                "epochs": 2,
                "batch_size": 16,
                "image_size": image_size,
                "lr": lr,
                "lr_scheduler": "constant",
                "num_workers": 0,
            },
        }
        response = self.http.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        done = self.stack.wait_done(job_id, timeout=600)
        assert done.status == "succeeded", (done.error, self.stack.log("w"))
        return job_id, half

    def checkpoint(self, job_id: str) -> Path:
        return find_checkpoint(self.stack.settings.jobs_dir / job_id, "last")

    def accuracy(self, job_id: str) -> float:
        return self.stack.jobs.get(job_id).metrics["val_accuracy"]


@pytest.fixture(scope="module")
def zoo(
    module_tmp_path: Path, redis_databases: RedisDatabases, api_servers: ApiServers
) -> Iterator[Zoo]:
    with ExitStack() as cleanup:
        root = module_tmp_path
        url = cleanup.enter_context(redis_databases.lend())
        client = redis.Redis.from_url(url, decode_responses=True)
        cleanup.callback(client.close)
        api = cleanup.enter_context(api_servers.serving(redis_url=url, root=root))
        stack = Stack(root, url, client)
        models = root / "models"
        write_timm_resnet(models)
        write_timm_vit(models)
        write_hf_vit(models)
        digits = write_digits_folder(root / "datasets" / "digits", per_class=100, size=32)
        for label, word in enumerate(WORDS):
            (digits / str(label)).rename(digits / word)
        cleanup.callback(stack.stop)
        stack.start_worker("w")
        yield Zoo(api, stack)


def _frozen_keys(base: dict[str, torch.Tensor], groups: list[dict], half: int) -> list[str]:
    modules = [m for g in groups[:half] for m in g["modules"]]
    return [k for k in base if any(k == m or k.startswith(f"{m}.") for m in modules)]


def _assert_frozen_bitwise(
    base: dict[str, torch.Tensor], final: dict[str, torch.Tensor], frozen: list[str]
) -> None:
    assert frozen
    assert [k for k in frozen if not bits_equal(base[k], final[k])] == []
    trained = [k for k in final if k not in frozen and not k.endswith(BN_BUFFERS)]
    assert any(not torch.equal(base[k], final[k]) for k in trained if k in base)


def _record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "thaw.json").read_text())


def _same_predictions(a: torch.nn.Module, b: torch.nn.Module, size: int) -> None:
    x = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out_a, out_b = a.eval()(x), b.eval()(x)
    out_a = getattr(out_a, "logits", out_a)
    out_b = getattr(out_b, "logits", out_b)
    assert out_a.shape == (6, 10)
    assert torch.equal(out_a, out_b)


def test_timm_resnet_from_a_weights_file(zoo: Zoo) -> None:
    import timm

    base_model = {"source": "timm", "name": TIMM_RESNET, "weights_file": TIMM_RESNET_FILE}
    job_id, half = zoo.run(base_model, image_size=16, lr=3e-3)
    assert zoo.accuracy(job_id) > 0.3  # chance is 0.1
    folder = zoo.checkpoint(job_id)
    base = load_file(str(zoo.stack.settings.models_dir / TIMM_RESNET_FILE))
    final = load_file(str(folder / "model.safetensors"))
    frozen = _frozen_keys(base, zoo.groups("timm", TIMM_RESNET), half)
    assert any(k.endswith("running_var") for k in frozen)
    _assert_frozen_bitwise(base, final, frozen)

    record = _record(folder)
    assert record["source"] == "timm"
    assert record["classes"] == CLASSES
    assert record["image_size"] == 16
    assert record["interpolation"] == "bicubic"
    assert json.loads((folder / "config.json").read_text())["label_names"] == CLASSES

    own = timm.create_model(
        TIMM_RESNET,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(folder / "model.safetensors"), "num_classes": 10},
        num_classes=10,
    )
    _same_predictions(own, thaw.load_model(folder), 16)


def test_timm_vit_from_a_hub_layout_folder(zoo: Zoo) -> None:
    import timm

    job_id, half = zoo.run({"source": "timm", "name": TIMM_VIT_FOLDER}, image_size=32, lr=3e-3)
    assert zoo.accuracy(job_id) > 0.15  # chance is 0.1
    folder = zoo.checkpoint(job_id)
    base = load_file(str(zoo.stack.settings.models_dir / TIMM_VIT_FOLDER / "model.safetensors"))
    final = load_file(str(folder / "model.safetensors"))
    groups = zoo.groups("timm", TIMM_VIT_FOLDER)
    assert groups[0]["modules"] == ["cls_token", "pos_embed", "patch_embed"]
    _assert_frozen_bitwise(base, final, _frozen_keys(base, groups, half))
    assert _record(folder)["mean"] == [0.5, 0.5, 0.5]

    by_overlay = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(folder / "model.safetensors"), "num_classes": 10},
        num_classes=10,
        **TIMM_VIT_ARGS,
    )
    by_folder = timm.create_model(f"local-dir:{folder}", pretrained=True)
    loaded = thaw.load_model(folder)
    _same_predictions(by_overlay, loaded, 32)
    _same_predictions(by_folder, loaded, 32)


def test_huggingface_vit_from_a_saved_folder(zoo: Zoo) -> None:
    from transformers import AutoModelForImageClassification

    groups = zoo.groups("huggingface", HF_VIT_FOLDER)
    assert [g["name"] for g in groups] == [
        "vit.embeddings", "vit.layers.0", "vit.layers.1", "vit.layernorm",
        "classifier",
    ]  # fmt: skip
    job_id, half = zoo.run({"source": "huggingface", "name": HF_VIT_FOLDER}, 32, lr=3e-3)
    assert zoo.accuracy(job_id) > 0.15  # chance is 0.1
    folder = zoo.checkpoint(job_id)
    base = load_file(str(zoo.stack.settings.models_dir / HF_VIT_FOLDER / "model.safetensors"))
    final = load_file(str(folder / "model.safetensors"))
    _assert_frozen_bitwise(base, final, _frozen_keys(base, groups, half))

    record = _record(folder)
    assert (record["source"], record["modality"]) == ("huggingface", "image")
    assert (record["mean"], record["std"]) == (HF_MEAN, HF_STD)
    own = AutoModelForImageClassification.from_pretrained(folder)
    assert own.config.id2label == dict(enumerate(CLASSES))
    assert own.config.label2id == {c: i for i, c in enumerate(CLASSES)}
    _same_predictions(own, thaw.load_model(folder), 32)


def test_models_lists_every_source_and_how_to_name_a_model(zoo: Zoo) -> None:
    body = httpx.get(f"{zoo.api.url}/v1/models").json()
    sources = {s["source"]: s for s in body["data"]}
    assert list(sources) == ["torchvision", "timm", "huggingface", "job"]
    assert "convnext_tiny" in sources["timm"]["builders"]
    assert all(s["name"] for s in sources.values())
