"""LoRA through the API: plans show adapters per layer, bad adapter specs are clear 422s,
and a lora checkpoint lists and serves its adapter/ files."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis
import torch
from api_fixtures import ApiServer, job_body, problem

from thaw.checkpoints import save_checkpoint
from thaw.checkpoints.adapter import AdapterExport
from thaw.freezing.adapters import Adapters

LORA = {"method": "lora", "adapter": {"r": 4, "alpha": 8, "targets": ["layer4"]}}


def _lora(inputs: int, outputs: int, kernel: int, r: int = 4) -> int:
    """Parameters of PEFT's adapter on a Conv2d: A is r kernels over the input, B a 1x1."""
    return r * inputs * kernel * kernel + outputs * r


def test_plan_shows_adapters_per_layer_and_counts_their_parameters(
    http: httpx.Client, store: redis.Redis
) -> None:
    response = http.post("/v1/plans", json=job_body(freeze=LORA, schedule=[]))
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["adapter"]["targets"] == [
        "layer4.0.conv1", "layer4.0.conv2", "layer4.0.downsample.0",
        "layer4.1.conv1", "layer4.1.conv2",
    ]  # fmt: skip
    adapter_params = sum(
        _lora(*shape) for shape in ((256, 512, 3), (512, 512, 3), (256, 512, 1), (512, 512, 3))
    ) + _lora(512, 512, 3)
    assert plan["adapter"]["params"] == adapter_params
    assert plan["adapter"]["saved_modules"] == ["fc"]
    first = plan["epochs"][0]
    assert first["trainable_params"] == adapter_params + 512 * 4 + 4
    rows = {r["name"]: r for r in first["layers"]}
    conv = rows["layer4.0.conv1"]
    assert conv["adapter"] == {"r": 4, "params": _lora(256, 512, 3), "trainable": True}
    assert conv["base_trains"] is False and conv["trainable"] == "partial"
    assert rows["layer4.0.bn1"] | {"adapter": None} == rows["layer4.0.bn1"]
    assert rows["layer4.0.bn1"]["mode"] == "eval"
    assert rows["fc"]["base_trains"] is True and rows["fc"]["trainable"] == "trainable"
    assert rows["layer3.0.conv1"]["trainable"] == "frozen"
    assert store.dbsize() == 0


def test_adapter_with_zero_lr_is_refused_naming_freeze_method(http: httpx.Client) -> None:
    body = job_body(freeze={**LORA, "method": "zero_lr"})
    err = problem(http.post("/v1/jobs", json=body), 422)
    assert err["errors"][0]["loc"] == "freeze.method"
    assert "zero_lr cannot be combined with adapters" in err["errors"][0]["message"]
    err = problem(http.post("/v1/plans", json=job_body(freeze={"method": "lora"})), 422)
    assert err["errors"][0]["loc"] == "freeze.method"
    assert "needs freeze.adapter" in err["errors"][0]["message"]
    assert http.get("/v1/jobs").json()["data"] == []


def test_targets_matching_nothing_or_no_linear_or_conv_are_named(http: httpx.Client) -> None:
    adapter = {"targets": ["layer4", "layer9.conv1"]}
    err = problem(
        http.post("/v1/plans", json=job_body(freeze={"method": "lora", "adapter": adapter})), 422
    )
    assert err["errors"][0]["loc"] == "freeze.adapter.targets[1]"
    assert err["errors"][0]["message"] == "selector 'layer9.conv1' matches no parameter"
    assert "layer1.0.conv1" in err["errors"][0]["closest"]
    adapter = {"targets": ["type:BatchNorm2d"]}
    err = problem(
        http.post("/v1/plans", json=job_body(freeze={"method": "lora", "adapter": adapter})), 422
    )
    assert err["errors"][0]["loc"] == "freeze.adapter.targets[0]"
    assert err["errors"][0]["message"] == (
        "'type:BatchNorm2d' selects no Linear or Conv2d layer, only BatchNorm2d"
    )
    adapter = {"targets": ["fc"]}
    err = problem(
        http.post("/v1/plans", json=job_body(freeze={"method": "lora", "adapter": adapter})), 422
    )
    assert "the head (fc), which trains in full" in err["errors"][0]["message"]


def test_lora_checkpoint_lists_and_serves_its_adapter_files(
    api: ApiServer, http: httpx.Client, tmp_path: Path
) -> None:
    job_id = http.post("/v1/jobs", json=job_body(freeze=LORA, schedule=[])).json()["id"]
    export = AdapterExport(
        Adapters(("layer4.0.conv1",), 2, 4.0, 0.0).lora_config(["fc"]),
        {"base_model.model.layer4.0.conv1.lora_A.weight": torch.ones(2, 256, 3, 3)},
    )
    save_checkpoint(
        api.jobs_dir / job_id,
        epoch=1,
        step=4,
        model_state={"w": torch.zeros(4)},
        config={"source": "torchvision", "name": "resnet18", "num_classes": 4},
        training_state={"epoch": 1},
        metrics={"val_loss": 0.5},
        keep_last=2,
        adapter=export,
    )
    listed = http.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"][0]["files"]
    names = [f["name"] for f in listed]
    assert "adapter/adapter_config.json" in names and "adapter/adapter_model.safetensors" in names
    base = f"/v1/jobs/{job_id}/checkpoints/last"
    on_disk = api.jobs_dir / job_id / "checkpoints/epoch-1/adapter/adapter_model.safetensors"
    response = http.get(f"{base}/adapter/adapter_model.safetensors")
    assert response.status_code == 200, response.text
    assert response.content == on_disk.read_bytes()
    assert 'filename="adapter_model.safetensors"' in response.headers["content-disposition"]
    config = http.get(f"{base}/adapter/adapter_config.json").json()
    assert config["peft_type"] == "LORA" and config["modules_to_save"] == ["fc"]
    for trick in ("adapter/../meta.json", "adapter/.hidden", "other/adapter_config.json"):
        assert http.get(f"{base}/{trick}").status_code in (400, 404), trick
    from thaw.client.api import ThawClient

    with ThawClient(api.url) as client:
        files = client.download(job_id, "last", tmp_path / "out")
    fetched = sorted(str(f.path.relative_to(tmp_path / "out")) for f in files)
    assert fetched == [
        "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
        "config.json", "model.safetensors",
    ]  # fmt: skip
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").read_bytes() == (
        on_disk.read_bytes()
    )
