"""Known ways frozen layers silently train, each shown with real optimizer steps."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError
from support import (
    bits_equal,
    engine_for,
    engine_on,
    image_batches,
    make_spec,
    snapshot,
    train_steps,
    vector_batches,
)
from torch import nn

from thaw.freezing.engine import FROZEN_GROUP
from thaw.spec import Hyperparameters, JobSpec


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


class Twins(nn.Module):
    """Two layers with equal values, so only identity tells their parameters apart."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        with torch.no_grad():
            self.b.weight.copy_(self.a.weight)
            self.b.bias.copy_(self.a.bias)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.a(x)) + torch.relu(self.b(x)))


def _decaying_hp(optimizer: str) -> dict:
    return {
        "epochs": 2,
        "optimizer": optimizer,
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.1,
        "lr_scheduler": "constant",
    }


def _in_optimizer(optimizer: torch.optim.Optimizer) -> list[int]:
    return [id(p) for g in optimizer.param_groups for p in g["params"]]


def _torch_optimizer(name: str, params) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    return torch.optim.AdamW(params, lr=0.1, weight_decay=0.1)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("method", ["requires_grad", "zero_lr"])
def test_frozen_params_not_moved_by_weight_decay_or_momentum_when_grad_is_zero_tensor(
    method, optimizer
):
    """pytorch/pytorch#150610, fairseq#4702: a zeros gradient is not "no gradient".

    SGD momentum and weight decay, and AdamW's decoupled decay, move a parameter whose
    ``.grad`` is a zeros tensor. Here the trainer clears gradients with
    ``zero_grad(set_to_none=False)``, the setting that leaves zeros tensors behind.
    """
    batches = vector_batches(6)

    torch.manual_seed(0)
    naive = TwoLayer()
    opt = _torch_optimizer(optimizer, naive.parameters())
    for step, (x, y) in enumerate(batches):
        if step == 2:
            naive.body.requires_grad_(False)
            frozen_at = naive.body.weight.detach().clone()
        nn.functional.cross_entropy(naive(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    assert naive.body.weight.grad is not None
    assert torch.count_nonzero(naive.body.weight.grad) == 0
    assert not torch.equal(naive.body.weight, frozen_at)

    torch.manual_seed(0)
    model = TwoLayer()
    engine = engine_on(
        model,
        "head",
        freeze={"default": "trainable", "method": method},
        schedule=[{"at_step": 2, "freeze": ["body"]}],
        hyperparameters=_decaying_hp(optimizer),
        steps_per_epoch=3,
    )
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def check(step: int) -> None:
        seen[step] = snapshot(model)
        if step > 2:
            for param in model.body.parameters():
                assert param.grad is None
                assert param not in engine.optimizer.state

    end = train_steps(engine, batches, set_to_none=False, after_each=check)
    assert end == 6
    assert engine.phase == 1
    for key in ("body.weight", "body.bias"):
        assert all(bits_equal(seen[2][key], seen[s][key]) for s in range(3, 7)), key
        assert not bits_equal(seen[1][key], seen[2][key]), key
    assert not torch.equal(seen[2]["head.weight"], seen[6]["head.weight"])
    body = {id(p) for p in model.body.parameters()}
    if method == "requires_grad":
        assert body.isdisjoint(_in_optimizer(engine.optimizer))
        assert not model.body.weight.requires_grad
    else:
        frozen = next(g for g in engine.optimizer.param_groups if g["name"] == FROZEN_GROUP)
        assert {id(p) for p in frozen["params"]} == body
        assert (frozen["lr"], frozen["weight_decay"]) == (0.0, 0.0)


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_zero_lr_is_a_real_freeze(scheduler, optimizer):
    """mmdetection#8210: an lr of zero must not let weight decay or momentum through."""
    spec = make_spec(
        freeze={
            "default": "frozen",
            "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
            "method": "zero_lr",
        },
        schedule=[{"at_step": 2, "freeze": ["layer4"]}],
        hyperparameters={
            "epochs": 1,
            "batch_size": 4,
            "optimizer": optimizer,
            "lr": 0.05,
            "momentum": 0.9,
            "weight_decay": 0.5,
            "lr_scheduler": scheduler,
            "warmup_steps": 1,
        },
    )
    engine = engine_for(spec, num_train=16)
    params = engine.index.params
    assert all(p.requires_grad for p in params.values())
    base = snapshot(engine.model)
    frozen_from_start = [n for n in params if not n.startswith(("layer4.", "fc."))]
    layer4 = [n for n in params if n.startswith("layer4.")]
    seen: dict[int, dict[str, torch.Tensor]] = {}
    lrs: list[float] = []

    def check(step: int) -> None:
        seen[step] = snapshot(engine.model)
        frozen = next(g for g in engine.optimizer.param_groups if g["name"] == FROZEN_GROUP)
        lrs.append(frozen["lr"])
        assert frozen["weight_decay"] == 0.0
        frozen_names = [n for n, t in engine.trainable.items() if not t]
        assert {id(p) for p in frozen["params"]} == {id(params[n]) for n in frozen_names}
        assert [n for n in frozen_names if params[n] in engine.optimizer.state] == []
        if step < 4:
            trained = [g["lr"] for g in engine.optimizer.param_groups if g["name"] != FROZEN_GROUP]
            assert all(lr > 0.0 for lr in trained)

    train_steps(engine, image_batches(4), after_each=check)
    assert lrs == [0.0, 0.0, 0.0, 0.0]
    for name in frozen_from_start:
        assert bits_equal(base[name], seen[4][name]), name
    for name in layer4:
        assert bits_equal(seen[2][name], seen[4][name]), name
    assert not bits_equal(base["layer4.0.conv1.weight"], seen[2]["layer4.0.conv1.weight"])
    assert not bits_equal(seen[2]["fc.weight"], seen[4]["fc.weight"])
    assert {id(p) for p in engine.optimizer.state} == {
        id(params["fc.weight"]),
        id(params["fc.bias"]),
    }


def test_batchnorm_running_stats_do_not_drift_while_frozen():
    """Lightning#15062: BatchNorm in train mode updates running stats with no gradient at all."""
    spec = make_spec(
        schedule=[{"at_step": 2, "freeze": ["layer4"]}],
        hyperparameters={"epochs": 1, "batch_size": 4, "lr": 0.01, "lr_scheduler": "constant"},
    )
    engine = engine_for(spec, num_train=16)
    model = engine.model
    base = snapshot(model)
    stats = [k for k in base if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    outside = [k for k in stats if not k.startswith("layer4.")]
    inside = [k for k in stats if k.startswith("layer4.")]
    assert len(outside) == 3 * 15 and len(inside) == 3 * 5
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def validate_then_resume(step: int) -> None:
        seen[step] = snapshot(model)
        model.eval()
        with torch.no_grad():
            model(image_batches(1)[0][0])
        model.train()

    for inputs, labels in image_batches(4):
        train_steps(engine, [(inputs, labels)], start=len(seen), after_each=validate_then_resume)

    for key in outside:
        assert bits_equal(base[key], seen[4][key]), key
    for key in inside:
        assert bits_equal(seen[2][key], seen[4][key]), key
    assert int(seen[4]["layer4.0.bn1.num_batches_tracked"]) == 2
    assert int(seen[4]["bn1.num_batches_tracked"]) == 0
    assert not bits_equal(base["layer4.0.bn1.running_mean"], seen[2]["layer4.0.bn1.running_mean"])


def test_model_train_does_not_undo_eval_freezing():
    """mmsegmentation#2447: a later ``train()``, also one reaching the model through a
    parent module, must not put frozen BatchNorm layers back into train mode."""
    spec = make_spec(schedule=[{"at_epoch": 2, "unfreeze": ["layer3"]}])
    engine = engine_for(spec, meta=True, num_train=8)
    model = engine.model
    batchnorms = engine.index.batchnorms
    assert len(batchnorms) == 20

    def training_bns() -> set[str]:
        return {name for name in batchnorms if model.get_submodule(name).training}

    layer4 = {n for n in batchnorms if n.startswith("layer4.")}
    layer3 = {n for n in batchnorms if n.startswith("layer3.")}

    assert model.train() is model
    assert training_bns() == layer4
    assert model.layer1[0].conv1.training and model.layer1[0].relu.training
    model.eval()
    assert training_bns() == set()
    model.train(False)
    assert training_bns() == set()
    model.train(True)
    assert training_bns() == layer4

    wrapper = nn.Sequential(model)
    wrapper.eval()
    wrapper.train()
    assert model.training
    assert training_bns() == layer4

    engine.advance(2)
    assert engine.phase == 1
    assert training_bns() == layer4 | layer3
    model.eval()
    model.train()
    assert training_bns() == layer4 | layer3


def test_submodule_train_does_not_undo_eval_freezing():
    engine = engine_for(make_spec(), meta=True)
    model = engine.model
    model.train()
    model.layer1.train()
    assert model.layer1[0].bn1.training is False


def test_model_copy_keeps_its_own_train():
    engine = engine_for(make_spec(), meta=True)
    model = engine.model
    model.eval()
    clone = copy.deepcopy(model)
    assert clone.train() is clone
    assert model.training is False
    assert clone.training is True
    assert clone.bn1.training is False


def test_optimizer_membership_is_by_identity_not_value():
    torch.manual_seed(0)
    model = Twins()
    assert torch.equal(model.a.weight, model.b.weight)
    engine = engine_on(
        model,
        "head",
        freeze={"default": "trainable", "rules": [{"match": "a", "trainable": False}]},
        schedule=[{"at_step": 2, "unfreeze": ["a"]}, {"at_step": 3, "freeze": ["b"]}],
        hyperparameters={
            "epochs": 3,
            "optimizer": "sgd",
            "lr": 0.1,
            "weight_decay": 0.0,
            "lr_scheduler": "constant",
        },
        steps_per_epoch=2,
    )
    a = list(model.a.parameters())
    b = list(model.b.parameters())
    head = list(model.head.parameters())
    members: dict[int, list[int]] = {}

    def check(step: int) -> None:
        ids = _in_optimizer(engine.optimizer)
        assert len(ids) == len(set(ids)), f"a parameter sits in two groups at step {step}"
        members[step] = ids

    def ids(params) -> list[int]:
        return [id(p) for p in params]

    check(0)
    assert sorted(members[0]) == sorted(ids(b + head))
    seen = {0: snapshot(model)}

    def record(step: int) -> None:
        check(step)
        seen[step] = snapshot(model)

    train_steps(engine, vector_batches(6), after_each=record)

    assert sorted(members[2]) == sorted(ids(b + head))
    assert sorted(members[3]) == sorted(ids(b + head + a))
    added = [g for g in engine.optimizer.param_groups if g["name"].startswith("phase1")]
    assert [g["name"] for g in added] == ["phase1"]
    assert len(added[0]["params"]) == 2
    assert all(p is q for p, q in zip(added[0]["params"], a, strict=True))
    assert sorted(members[6]) == sorted(ids(head + a))
    assert set(ids(b)).isdisjoint(members[6])
    assert {id(p) for p in engine.optimizer.state} == set(ids(head + a))
    assert not bits_equal(seen[3]["a.weight"], seen[6]["a.weight"])
    assert bits_equal(seen[3]["b.weight"], seen[6]["b.weight"])
    assert bits_equal(seen[0]["a.weight"], seen[2]["a.weight"])
    assert not bits_equal(seen[0]["b.weight"], seen[2]["b.weight"])


def test_no_compile_offered_or_recompiled(monkeypatch):
    """torch.compile is not offered: a compiled graph is specialized on which tensors
    require grad, and freezing or thawing mid-run changes exactly that, so the graph
    would go stale or recompile at every phase change (pytorch#139476). The spec has
    no such option, and the engine never calls torch.compile."""
    base = {"base_model": {"source": "torchvision", "name": "resnet18"}}
    for body, loc in (
        ({**base, "hyperparameters": {"compile": True}}, ("hyperparameters", "compile")),
        ({**base, "compile": True}, ("compile",)),
    ):
        with pytest.raises(ValidationError) as info:
            JobSpec.model_validate(body)
        assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(loc, "extra_forbidden")]
    assert not [f for f in Hyperparameters.model_fields if "compile" in f]

    def refuse(*args, **kwargs):
        raise AssertionError("torch.compile was called")

    monkeypatch.setattr(torch, "compile", refuse)
    torch.manual_seed(0)
    engine = engine_on(
        TwoLayer(),
        "head",
        freeze={"default": "frozen", "rules": [{"match": "head", "trainable": True}]},
        schedule=[{"at_step": 1, "unfreeze": ["body"]}],
        hyperparameters={"epochs": 1, "lr_scheduler": "constant"},
        steps_per_epoch=3,
    )
    assert train_steps(engine, vector_batches(3)) == 3
    assert engine.phase == 1
    assert all(p.requires_grad for p in engine.model.parameters())
