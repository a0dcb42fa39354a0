"""With method lora, rules, schedule events, layer_lr_decay and param_groups act on
adapters by their layer, and the optimizer follows them by identity."""

from __future__ import annotations

from typing import Any

import pytest
from support import resolved

from thaw.errors import SpecError
from thaw.freezing.engine import FreezeEngine
from thaw.freezing.plan import plan_table
from thaw.spec import JobSpec

ADAPTED = [
    "layer4.0.conv1",
    "layer4.0.conv2",
    "layer4.0.downsample.0",
    "layer4.1.conv1",
    "layer4.1.conv2",
]


def _spec(**overrides: Any) -> JobSpec:
    body: dict[str, Any] = {
        "base_model": {"source": "torchvision", "name": "resnet18"},
        "freeze": {
            "method": "lora",
            "adapter": {"r": 2, "targets": ["layer4"]},
            "rules": [
                {"match": "layer4.1", "trainable": False},
                {"match": "layer3.0.bn1", "trainable": True},
            ],
        },
        "schedule": [
            {"at_epoch": 2, "unfreeze": ["layer4.1"], "lr": 0.5},
            {"at_epoch": 3, "freeze": ["layer4.0"]},
        ],
        "hyperparameters": {
            "epochs": 3,
            "batch_size": 4,
            "lr": 0.1,
            "lr_scheduler": "constant",
            "layer_lr_decay": 0.5,
            "param_groups": [{"match": "layer4.0.downsample", "lr": 0.25}],
        },
    }
    body.update(overrides)
    return JobSpec.model_validate(body)


def _rows(table: dict[str, Any], epoch: int) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in table["epochs"][epoch - 1]["layers"]}


def test_rules_events_and_lr_options_reach_adapters_by_their_layer():
    table = plan_table(resolved(_spec(), meta=True))
    first, second, third = (_rows(table, e) for e in (1, 2, 3))
    # Rules: layer4.1's adapters start disabled; a rule naming a norm trains it in full.
    assert [first[n]["adapter"]["trainable"] for n in ADAPTED] == [True] * 3 + [False] * 2
    assert first["layer3.0.bn1"]["base_trains"] is True
    assert first["layer3.0.bn1"]["mode"] == "train" and first["layer4.0.bn1"]["mode"] == "eval"
    assert all(first[n]["base_trains"] is False for n in ADAPTED)
    # layer_lr_decay by the adapter's layer group (layer4 is one below fc), param_groups by
    # its layer; an unfreeze event's lr for the adapters it thaws.
    assert first["layer4.0.conv1"]["lr"] == pytest.approx(0.05)
    assert first["layer4.0.downsample.0"]["lr"] == pytest.approx(0.25)
    assert first["fc"]["lr"] == pytest.approx(0.1)
    assert first["layer3.0.bn1"]["lr"] == pytest.approx(0.025)
    assert second["layer4.1.conv1"]["adapter"]["trainable"] is True
    assert second["layer4.1.conv1"]["lr"] == pytest.approx(0.5)
    # A freeze event disables adapters; the base weights never trained.
    assert [third[n]["adapter"]["trainable"] for n in ADAPTED] == [False] * 3 + [True] * 2
    assert table["adapter"]["saved_modules"] == ["fc", "layer3.0.bn1"]
    adapter = sum(first[n]["adapter"]["params"] for n in ADAPTED[:3])
    assert table["epochs"][0]["trainable_params"] == adapter + 512 * 3 + 3 + 2 * 256


def test_the_optimizer_holds_exactly_the_enabled_adapters_by_identity():
    r = resolved(_spec(), meta=False, classes=10)
    engine = FreezeEngine.from_resolved(r)
    index = r.index

    def in_optimizer() -> set[str]:
        ids = {id(p) for g in engine.optimizer.param_groups for p in g["params"]}
        return {n for n, p in index.params.items() if id(p) in ids}

    def adapters(layers: list[str]) -> set[str]:
        return {f"{n}.lora_{ab}.weight" for n in layers for ab in "AB"}

    head_and_norm = {"fc.weight", "fc.bias", "layer3.0.bn1.weight", "layer3.0.bn1.bias"}
    assert in_optimizer() == adapters(ADAPTED[:3]) | head_and_norm
    assert all(not index.params[f"{n}.weight"].requires_grad for n in ADAPTED)
    engine.advance(r.timeline.steps_per_epoch)
    assert in_optimizer() == adapters(ADAPTED) | head_and_norm
    engine.advance(2 * r.timeline.steps_per_epoch)
    assert in_optimizer() == adapters(ADAPTED[3:]) | head_and_norm
    assert not index.params["layer4.0.conv1.lora_A.weight"].requires_grad
    # The adapted model's own names are PEFT's; Thaw's names point at the same tensors.
    model = dict(index.model.named_parameters())
    assert index.params["layer4.0.conv1.weight"] is model["layer4.0.conv1.base_layer.weight"]
    assert (
        index.params["layer4.0.conv1.lora_B.weight"]
        is model["layer4.0.conv1.lora_B.default.weight"]
    )


def test_a_module_trained_in_full_may_not_hold_an_adapter_layer():
    spec = _spec(
        freeze={
            "method": "lora",
            "adapter": {"r": 2, "targets": ["layer4.0.conv1"]},
            "rules": [{"match": "layer4.0.downsample", "trainable": True}],
        },
        schedule=[],
    )
    assert resolved(spec, meta=True).saved_modules == [
        "fc", "layer4.0.downsample.0", "layer4.0.downsample.1"
    ]  # fmt: skip
    model_level = _spec(
        base_model={"source": "torchvision", "name": "vit_b_16"},
        freeze={
            "method": "lora",
            "adapter": {"targets": ["re:encoder\\.layers\\.encoder_layer_11\\.mlp\\.0"]},
            "rules": [{"match": "class_token", "trainable": True}],
        },
        schedule=[],
        hyperparameters={"epochs": 1},
    )
    with pytest.raises(SpecError) as err:
        resolved(model_level, meta=True)
    assert err.value.path == "freeze.rules"
    assert "a parameter of the model itself trains" in err.value.message
