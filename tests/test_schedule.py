"""Schedules: the per-epoch trainable set, optimizer groups per event, LR, presets, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from support import bits_equal, engine_for, image_batches, make_spec, resolved, run_steps, snapshot

from thaw.errors import SpecError
from thaw.freezing.plan import plan_table

THAW_SCHEDULE = [
    {"at_epoch": 2, "unfreeze": ["layer3"], "lr": 1e-3},
    {"at_epoch": 3, "unfreeze": ["group:0:"], "lr": 5e-4},
]
STEPS_PER_EPOCH = 2  # 8 training examples, batch 4


def _scheduled_spec(**hp):
    return make_spec(
        schedule=THAW_SCHEDULE,
        hyperparameters={
            "epochs": 3,
            "batch_size": 4,
            "lr": 1e-2,
            "weight_decay": 0.5,
            "optimizer": "adamw",
            "lr_scheduler": "cosine",
            **hp,
        },
    )


def _trainable(engine) -> set[str]:
    return {n for n, p in engine.index.params.items() if p.requires_grad}


def test_trainable_set_per_epoch_matches_the_plan_and_groups_follow_events():
    spec = _scheduled_spec()
    engine = engine_for(spec, num_train=8)
    plan = plan_table(resolved(spec, meta=True, num_train=8))
    planned = {
        e["epoch"]: {
            p
            for row in e["layers"]
            if row["trainable"] != "frozen"
            for p in engine.index.module_params.get(row["name"], [row["name"]])
            if engine.index.param_owner[p] == row["name"] or p == row["name"]
        }
        for e in plan["epochs"]
    }
    batches = image_batches(2)
    base_groups = len(engine.optimizer.param_groups)
    seen = {}
    step = 0
    for epoch in (1, 2, 3):
        engine.advance(step)
        seen[epoch] = _trainable(engine)
        step = run_steps(engine, batches, start=step)

    assert seen == planned
    assert seen[1] == {n for n in engine.index.params if n.startswith(("layer4.", "fc."))}
    assert seen[2] == seen[1] | {n for n in engine.index.params if n.startswith("layer3.")}
    assert seen[3] == set(engine.index.params)

    groups = engine.optimizer.param_groups
    new = groups[base_groups:]
    assert {g["name"].split("/")[0] for g in new} == {"phase1", "phase2"}
    for g in new:
        asked = 1e-3 if g["name"].startswith("phase1") else 5e-4
        assert g["initial_lr"] == asked
    phase1_ids = {id(p) for g in new if g["name"].startswith("phase1") for p in g["params"]}
    assert phase1_ids == {id(p) for n, p in engine.index.params.items() if n.startswith("layer3.")}


def test_cosine_lr_of_a_group_added_mid_run_follows_the_schedule():
    spec = _scheduled_spec()
    engine = engine_for(spec, num_train=8)
    total = 3 * STEPS_PER_EPOCH
    batches = image_batches(1)
    lrs = []
    for step in range(total):
        run_steps(engine, batches, start=step)
        if engine.phase >= 1:
            group = next(g for g in engine.optimizer.param_groups if g["name"].startswith("phase1"))
            lrs.append((step + 1, group["lr"]))
    for done, lr in lrs:
        expected = 1e-3 * 0.5 * (1 + math.cos(math.pi * done / total))
        assert lr == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert len(lrs) == total - STEPS_PER_EPOCH


def test_weight_decay_never_touches_frozen_parameters_before_their_thaw():
    spec = _scheduled_spec()
    engine = engine_for(spec, num_train=8)
    before = snapshot(engine.model)
    run_steps(engine, image_batches(2))  # epoch 1: only layer4 and fc train, weight decay 0.5
    after = engine.model.state_dict()
    for key in before:
        if not key.startswith(("layer4.", "fc.")):
            assert bits_equal(before[key], after[key]), key


def test_freezing_again_drops_gradients_and_state_so_nothing_moves_the_parameter():
    spec = make_spec(
        freeze={"default": "trainable"},
        schedule=[{"at_step": 2, "freeze": ["layer1"]}],
        hyperparameters={
            "epochs": 2,
            "batch_size": 4,
            "lr": 0.05,
            "optimizer": "sgd",
            "momentum": 0.9,
            "weight_decay": 0.1,
            "lr_scheduler": "constant",
        },
    )
    engine = engine_for(spec, num_train=8)
    batches = image_batches(2)
    run_steps(engine, batches)
    layer1 = [p for n, p in engine.index.params.items() if n.startswith("layer1.")]
    assert all(p in engine.optimizer.state for p in layer1)
    engine.advance(2)
    assert all(p.grad is None and not p.requires_grad for p in layer1)
    assert not any(p in engine.optimizer.state for p in layer1)
    frozen_at = snapshot(engine.model)
    run_steps(engine, batches, start=2)
    after = engine.model.state_dict()
    for key in frozen_at:
        if key.startswith("layer1.") and "running" not in key and "num_batches" not in key:
            assert bits_equal(frozen_at[key], after[key]), key


def test_at_step_event_applies_after_that_many_steps():
    spec = make_spec(schedule=[{"at_step": 3, "unfreeze": ["layer2"]}])
    engine = engine_for(spec, num_train=8)
    assert engine.advance(2) == []
    changes = engine.advance(3)
    assert [c.phase for c in changes] == [1]
    assert engine.index.params["layer2.0.conv1.weight"].requires_grad


def test_gradual_preset_thaws_one_group_per_epoch_from_the_top():
    spec = make_spec(
        freeze={"default": "frozen"},
        schedule=[{"preset": "gradual", "every_epochs": 1}],
        hyperparameters={"epochs": 3, "batch_size": 4},
    )
    plan = plan_table(resolved(spec, meta=True, num_train=8))
    by_epoch = {
        e["epoch"]: {r["name"] for r in e["layers"] if r["trainable"] == "trainable"}
        for e in plan["epochs"]
    }
    assert by_epoch[1] == {"fc"}
    assert {n.split(".")[0] for n in by_epoch[2]} == {"fc", "layer4"}
    assert {n.split(".")[0] for n in by_epoch[3]} == {"fc", "layer4", "layer3"}
    assert [p["start_epoch"] for p in plan["phases"]] == [1, 2, 3]


def test_fine_tune_preset_trains_the_top_group_then_everything():
    spec = make_spec(
        freeze={"default": "frozen"},
        schedule=[{"preset": "fine_tune", "freeze_epochs": 2}],
        hyperparameters={"epochs": 3, "batch_size": 4},
    )
    plan = plan_table(resolved(spec, meta=True, num_train=8))
    counts = [e["trainable_params"] for e in plan["epochs"]]
    total = plan["epochs"][0]["total_params"]
    fc = next(r for r in plan["epochs"][0]["layers"] if r["name"] == "fc")["params"]
    assert counts == [fc, fc, total]


def test_event_past_the_last_epoch_is_an_error_naming_the_field():
    spec = make_spec(schedule=[{"at_epoch": 4, "unfreeze": ["layer3"]}])
    with pytest.raises(SpecError) as err:
        resolved(spec, meta=True)
    assert err.value.path == "schedule[0].at_epoch"
    assert "past the last epoch (3)" in err.value.message


def test_at_step_past_the_run_is_an_error():
    spec = make_spec(schedule=[{"at_step": 12, "unfreeze": ["layer3"]}])
    with pytest.raises(SpecError) as err:
        resolved(spec, meta=True, num_train=16)  # 4 steps/epoch, 12 in all
    assert err.value.path == "schedule[0].at_step"


def test_one_event_that_freezes_and_thaws_the_same_parameter_is_an_error():
    spec = make_spec(
        schedule=[{"at_epoch": 2, "unfreeze": ["layer3"], "freeze": ["layer3.0.conv1"]}]
    )
    with pytest.raises(SpecError) as err:
        resolved(spec, meta=True)
    assert err.value.path == "schedule[0]"
    assert "'layer3.0.conv1.weight'" in err.value.message


def test_an_event_that_changes_nothing_is_a_plan_warning():
    spec = make_spec(schedule=[{"at_epoch": 2, "unfreeze": ["layer4"]}])
    plan = plan_table(resolved(spec, meta=True))
    assert plan["warnings"] == [
        "schedule[0] (event, epoch 2) changes nothing: every parameter it names is "
        "already in the state it asks for"
    ]


def test_nothing_trainable_is_an_error():
    spec = make_spec(freeze={"default": "frozen"})
    with pytest.raises(SpecError) as err:
        resolved(spec, meta=True)
    assert err.value.path == "freeze"
    spec = make_spec(
        freeze={"default": "trainable"}, schedule=[{"at_epoch": 2, "freeze": ["group:0:"]}]
    )
    with pytest.raises(SpecError) as err:
        resolved(spec, meta=True)
    assert err.value.path == "schedule[0]"


def test_layer_lr_decay_and_param_groups_set_group_lrs_and_no_decay_on_bias_and_norm():
    spec = make_spec(
        freeze={"default": "trainable"},
        hyperparameters={
            "epochs": 1,
            "lr": 1.0,
            "layer_lr_decay": 0.5,
            "weight_decay": 0.1,
            "param_groups": [{"match": "layer1", "lr": 0.01}],
        },
    )
    engine = engine_for(spec)
    lr_of = {id(p): g["initial_lr"] for g in engine.optimizer.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in engine.optimizer.param_groups for p in g["params"]}
    params = engine.index.params
    # groups: stem, layer1, layer2, layer3, layer4, fc -> fc is top (k=0)
    assert lr_of[id(params["fc.weight"])] == 1.0
    assert lr_of[id(params["layer4.0.conv1.weight"])] == 0.5
    assert lr_of[id(params["layer2.0.conv1.weight"])] == 0.125
    assert lr_of[id(params["conv1.weight"])] == 0.03125
    assert lr_of[id(params["layer1.0.conv1.weight"])] == 0.01
    assert wd_of[id(params["fc.weight"])] == 0.1
    assert wd_of[id(params["fc.bias"])] == 0.0
    assert wd_of[id(params["layer4.0.bn1.weight"])] == 0.0


def test_resume_replays_phases_before_loading_optimizer_state():
    spec = _scheduled_spec()
    engine = engine_for(spec, num_train=8)
    batches = image_batches(2)
    step = run_steps(engine, batches)
    step = run_steps(engine, batches, start=step)  # through epoch 2: layer3 thawed
    saved = copy.deepcopy(engine.state_dict())  # as a file would: no tensors shared
    saved_weights = snapshot(engine.model)

    fresh = engine_for(spec, num_train=8)
    fresh.model.load_state_dict(saved_weights)
    fresh.load_state_dict(saved)
    assert fresh.phase == 1
    assert [g["name"] for g in fresh.optimizer.param_groups] == [
        g["name"] for g in engine.optimizer.param_groups
    ]
    assert _trainable(fresh) == _trainable(engine)
    run_steps(engine, batches, start=step)
    run_steps(fresh, batches, start=step)
    for key, value in engine.model.state_dict().items():
        assert torch.equal(value, fresh.model.state_dict()[key]), key
