"""Freeze application on real models with real training steps (CPU)."""

from __future__ import annotations

import pytest
import torch
from support import (
    bits_equal,
    engine_for,
    image_batches,
    make_spec,
    minilm_spec,
    run_steps,
    snapshot,
    text_batches,
)


def _resnet_expected(engine) -> set[str]:
    return {n for n in engine.index.params if n.startswith(("layer4.", "fc."))}


def test_resnet18_layer4_and_fc_exactly_trainable_and_in_optimizer_by_identity():
    engine = engine_for(make_spec())
    expected = _resnet_expected(engine)
    params = engine.index.params

    assert {n for n, p in params.items() if p.requires_grad} == expected
    in_optimizer = [p for g in engine.optimizer.param_groups for p in g["params"]]
    assert len(in_optimizer) == len(expected)
    assert {id(p) for p in in_optimizer} == {id(params[n]) for n in expected}

    run_steps(engine, image_batches(2))
    with_state = {id(p) for p in engine.optimizer.state}
    assert with_state == {id(params[n]) for n in expected}


@pytest.mark.parametrize("method", ["requires_grad", "zero_lr"])
def test_resnet18_frozen_weights_and_bn_stats_bit_identical_after_steps(method):
    spec = make_spec(
        freeze={
            "default": "frozen",
            "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
            "method": method,
        },
        hyperparameters={
            "epochs": 1,
            "batch_size": 4,
            "lr": 0.05,
            "optimizer": "adamw",
            "weight_decay": 0.1,
            "lr_scheduler": "constant",
        },
    )
    engine = engine_for(spec)
    before = snapshot(engine.model)
    run_steps(engine, image_batches(3))
    after = engine.model.state_dict()

    trainable_prefixes = ("layer4.", "fc.")
    frozen = [k for k in before if not k.startswith(trainable_prefixes)]
    moved = [k for k in frozen if not bits_equal(before[k], after[k])]
    assert moved == []
    assert any(k.endswith("running_mean") for k in frozen)
    changed = [
        k
        for k in before
        if k.startswith(trainable_prefixes) and not bits_equal(before[k], after[k])
    ]
    assert "fc.weight" in changed and "layer4.0.conv1.weight" in changed
    assert "layer4.0.bn1.running_mean" in changed


@pytest.mark.parametrize("method", ["requires_grad", "zero_lr"])
def test_minilm_frozen_embeddings_and_lower_layers_bit_identical(method):
    spec = minilm_spec(
        freeze={
            "default": "trainable",
            "rules": [
                {"match": "bert.embeddings", "trainable": False},
                {"match": "bert.encoder.layer.[0-3]", "trainable": False},
            ],
            "method": method,
        },
        hyperparameters={
            "epochs": 1,
            "batch_size": 4,
            "lr": 1e-3,
            "weight_decay": 0.1,
            "lr_scheduler": "constant",
        },
    )
    engine = engine_for(spec)
    frozen_prefixes = ("bert.embeddings.", *(f"bert.encoder.layer.{i}." for i in range(4)))
    expected_trainable = {n for n in engine.index.params if not n.startswith(frozen_prefixes)}
    trainable = {n for n, p in engine.index.params.items() if p.requires_grad}
    if method == "requires_grad":
        assert trainable == expected_trainable
    else:
        assert trainable == set(engine.index.params)
    before = snapshot(engine.model)
    run_steps(engine, text_batches(2))
    after = engine.model.state_dict()

    frozen = [k for k in before if k.startswith(frozen_prefixes)]
    assert len(frozen) >= 4 * 16
    assert [k for k in frozen if not bits_equal(before[k], after[k])] == []
    for name in ("classifier.weight", "bert.encoder.layer.5.attention.self.query.weight"):
        assert not torch.equal(before[name], after[name]), name


@pytest.mark.parametrize("policy", ["follow", "frozen"])
def test_model_train_keeps_frozen_batchnorm_in_eval(policy):
    spec = make_spec(freeze={**make_spec().freeze.model_dump(), "batchnorm": policy})
    engine = engine_for(spec)
    model = engine.model
    model.eval()
    model.train()
    assert model.training
    assert model.bn1.training is False
    assert model.layer1[0].bn1.training is False
    assert model.layer4[0].bn1.training is (policy == "follow")
    assert model.layer4[0].conv1.training is True
    model.eval()
    assert model.layer4[0].bn1.training is False


def test_batchnorm_trainable_policy_trains_bn_inside_frozen_blocks():
    spec = make_spec(freeze={**make_spec().freeze.model_dump(), "batchnorm": "trainable"})
    engine = engine_for(spec)
    params = engine.index.params
    assert params["layer1.0.bn1.weight"].requires_grad
    assert not params["layer1.0.conv1.weight"].requires_grad
    before = snapshot(engine.model)
    run_steps(engine, image_batches(1))
    after = engine.model.state_dict()
    assert not torch.equal(before["layer1.0.bn1.running_mean"], after["layer1.0.bn1.running_mean"])
    assert bits_equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])


def test_batchnorm_frozen_policy_pins_bn_params_even_inside_trainable_blocks():
    spec = make_spec(freeze={**make_spec().freeze.model_dump(), "batchnorm": "frozen"})
    engine = engine_for(spec)
    params = engine.index.params
    assert not params["layer4.0.bn1.weight"].requires_grad
    assert params["layer4.0.conv1.weight"].requires_grad
    before = snapshot(engine.model)
    run_steps(engine, image_batches(2))
    after = engine.model.state_dict()
    for key in ("layer4.0.bn1.weight", "layer4.0.bn1.running_mean", "layer4.0.bn1.running_var"):
        assert bits_equal(before[key], after[key]), key
