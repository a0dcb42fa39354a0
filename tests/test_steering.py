"""Training that steers itself: best by the monitored metric, early stopping, thaw on
plateau (resumed exactly), the rotate preset, gradient accumulation and class weights."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from sklearn.utils.class_weight import compute_class_weight
from support import bits_equal, image_batches, resolved, settings, snapshot

from thaw.class_weights import balanced_weights, class_weight_vector
from thaw.data.shape import DataShape
from thaw.errors import SpecError
from thaw.freezing.engine import FreezeEngine
from thaw.freezing.plan import plan_table
from thaw.freezing.resolve import resolve
from thaw.settings import Settings, get_settings
from thaw.spec import JobSpec
from thaw.training import NullReporter, train

FROZEN_BN = {
    "default": "frozen",
    "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
    "batchnorm": "frozen",
}
# Too small a learning rate to move the metric: every epoch's value is the same.
STILL = {"lr": 1e-9, "lr_scheduler": "constant", "optimizer": "sgd", "momentum": 0.0}


def _spec(hp: dict[str, Any], checkpointing: dict[str, Any], **extra: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 30}},
            "freeze": FROZEN_BN,
            "hyperparameters": {
                "batch_size": 8,
                "image_size": 16,
                "num_workers": 0,
                "feature_cache": "off",
                **hp,
            },
            "checkpointing": {"keep_last": 20, **checkpointing},
            **extra,
        }
    )


class Recorder(NullReporter):
    def __init__(self, cancel_at_epoch: int | None = None):
        self.cancel_at_epoch = cancel_at_epoch
        self.epochs: dict[int, dict[str, float]] = {}
        self.phases: dict[int, int] = {}
        self.plateaus: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.current = 0

    def layers(self, epoch, entry):
        self.current = epoch
        self.phases.setdefault(epoch, entry["phase"])

    def metrics(self, epoch, metrics):
        self.epochs[epoch] = dict(metrics)

    def plateau(self, info):
        self.plateaus.append(info)

    def stopped_early(self, info):
        self.stops.append(info)

    def stop_reason(self):
        return "cancel" if self.current == self.cancel_at_epoch else None


def _settings(tmp: Path) -> Settings:
    return Settings(data_dir=tmp / "data", progress_interval_seconds=0)


def _weights(run: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"epoch-{epoch}" / "model.safetensors"))


def _index(run: Path) -> dict[str, Any]:
    return json.loads((run / "checkpoints" / "index.json").read_text())


def test_a_flat_metric_stops_after_patience_epochs(tmp_path: Path):
    spec = _spec(
        {"epochs": 6, **STILL},
        {
            "monitor": "val_accuracy",
            "early_stopping": {"patience": 2, "warmup_epochs": 1},
            "every_epochs": 10,  # the stop epoch is saved all the same
        },
    )
    reporter = Recorder()
    result = train(spec, tmp_path / "run", _settings(tmp_path), reporter)

    values = {e: m["val_accuracy"] for e, m in reporter.epochs.items()}
    assert len(set(values.values())) == 1, values  # the metric is flat
    # Epoch 1 is warm-up, epoch 2 sets the best, epochs 3 and 4 exhaust the patience.
    assert (result.status, result.epoch) == ("succeeded", 4)
    assert result.stopped_early is not None and result.stopped_early["epoch"] == 4
    assert reporter.stops == [result.stopped_early]
    assert "val_accuracy did not improve" in result.stopped_early["reason"]
    assert sorted(reporter.epochs) == [1, 2, 3, 4]
    assert _index(tmp_path / "run")["last"] == "epoch-4"
    assert set(reporter.epochs[4]) >= {"val_loss", "val_accuracy", "val_f1_macro", "train_loss"}


def test_the_plan_says_up_to_n_epochs():
    spec = _spec({"epochs": 6}, {"early_stopping": {"patience": 2}})
    table = plan_table(resolved(spec, meta=True, num_train=24))
    assert table["length"]["text"] == "up to 6 epochs"
    assert table["length"]["up_to"] is True
    plain = plan_table(resolved(_spec({"epochs": 6}, {}), meta=True, num_train=24))
    assert plain["length"]["text"] == "6 epochs"


def test_best_is_the_argmax_of_val_accuracy_with_mode_max(tmp_path: Path):
    spec = _spec({"epochs": 4, "lr": 0.05, "seed": 3}, {"monitor": "val_accuracy"})
    reporter = Recorder()
    train(spec, tmp_path / "run", _settings(tmp_path), reporter)
    index = _index(tmp_path / "run")
    assert (index["monitor"], index["mode"]) == ("val_accuracy", "max")
    accuracies = [reporter.epochs[e]["val_accuracy"] for e in range(1, 5)]
    expected = 1 + int(np.argmax(accuracies))  # the earliest on ties, as argmax
    assert index["best"] == f"epoch-{expected}"
    stored = {c["name"]: c["metrics"]["val_accuracy"] for c in index["checkpoints"]}
    assert [stored[f"epoch-{e}"] for e in range(1, 5)] == accuracies


def _plateau_spec() -> JobSpec:
    # Small enough steps that val_loss stays within min_delta, large enough to move weights.
    return _spec(
        {"epochs": 8, **STILL, "lr": 1e-5},
        {
            "monitor": "val_loss",
            "early_stopping": {"patience": 3, "min_delta": 0.01, "warmup_epochs": 1},
        },
        schedule=[{"on_plateau": {"patience": 2, "min_delta": 0.01}, "unfreeze": "layer3"}],
    )


def _predicted_thaw(values: dict[int, float], patience: int, min_delta: float) -> int | None:
    """The epoch that begins the plateau phase, read off the recorded val_loss values."""
    best, wait = None, 0
    for epoch in sorted(values):
        if best is None or values[epoch] < best - min_delta:
            best, wait = values[epoch], 0
        else:
            wait += 1
        if wait >= patience:
            return epoch + 1
    return None


def test_a_plateau_thaw_happens_when_the_recorded_metrics_say_and_resumes_exactly(
    tmp_path: Path,
):
    spec = _plateau_spec()
    run_settings = _settings(tmp_path)
    plan = plan_table(resolved(spec, meta=True, num_train=24))
    assert plan["phases"][1]["conditional"]["on_plateau"] == {"patience": 2, "min_delta": 0.01}
    assert plan["phases"][1]["start_epoch"] is None  # no deadline: only if the plateau comes

    whole = Recorder()
    result = train(spec, tmp_path / "whole", run_settings, whole)
    losses = {e: m["val_loss"] for e, m in whole.epochs.items()}
    thaw_epoch = _predicted_thaw(losses, 2, 0.01)
    assert thaw_epoch == 4
    assert [p["epoch"] for p in whole.plateaus] == [thaw_epoch]
    assert {e: p for e, p in whole.phases.items()} == {
        e: (0 if e < thaw_epoch else 1) for e in whole.phases
    }
    # layer3 is bit-identical until the thaw, and trains after it.
    before = _weights(tmp_path / "whole", thaw_epoch - 1)
    after = _weights(tmp_path / "whole", thaw_epoch)
    layer3 = [k for k in before if k.startswith("layer3.") and k.endswith("weight")]
    base = {k: v for k, v in _weights(tmp_path / "whole", 1).items() if k in layer3}
    assert all(bits_equal(before[k], base[k]) for k in layer3)
    assert not all(bits_equal(after[k], base[k]) for k in layer3)
    # The patience restarts with the new phase: epochs 4, 5 and 6 without gain stop the run.
    assert (result.status, result.epoch, result.stopped_early["epoch"]) == ("succeeded", 6, 6)

    # Killed mid-patience (after epoch 5, one epoch short of the stop), then resumed.
    broken = tmp_path / "broken"
    cancelled = train(spec, broken, run_settings, Recorder(cancel_at_epoch=6))
    assert (cancelled.status, _index(broken)["last"]) == ("cancelled", "epoch-5")
    resumed = train(spec, broken, run_settings, Recorder())
    assert (resumed.status, resumed.epoch, resumed.resumed_from) == ("succeeded", 6, 5)
    assert resumed.stopped_early == result.stopped_early
    whole_final, broken_final = _weights(tmp_path / "whole", 6), _weights(broken, 6)
    assert all(bits_equal(whole_final[k], broken_final[k]) for k in whole_final)
    # Resuming a run that already stopped early trains nothing more.
    again = train(spec, broken, run_settings, Recorder())
    assert (again.status, again.epoch, again.step) == ("succeeded", 6, resumed.step)


def test_a_plateau_deadline_must_follow_the_phase_before_it():
    spec = _spec(
        {"epochs": 4},
        {},
        schedule=[
            {"at_epoch": 3, "unfreeze": "layer3"},
            {"on_plateau": {"patience": 1}, "at_epoch": 2, "unfreeze": "layer2"},
        ],
    )
    with pytest.raises(SpecError) as caught:
        resolved(spec, meta=True, num_train=24)
    assert caught.value.path == "schedule[1].at_epoch"
    assert "not after epoch 3" in caught.value.message


ROTATE = {"preset": "rotate", "groups": "group:1:-1", "active": 2, "every_steps": 2, "seed": 5}


def test_rotate_plans_the_active_set_per_interval_and_leaves_the_rest_bit_identical():
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "freeze": {"default": "frozen", "batchnorm": "follow"},
            "schedule": [ROTATE],
            "hyperparameters": {"epochs": 3, "batch_size": 4, "lr": 1e-2},
        }
    )
    table = plan_table(resolved(spec, meta=True))  # 16 samples of batch 4: 12 steps
    r = resolved(spec)
    rotating = {g["index"] for g in table["groups"]} - {0, len(table["groups"]) - 1}
    for phase in table["phases"]:
        assert phase["start_step"] % 2 == 0
        active = phase["events"][-1]["active_groups"]
        assert len(active) == 2 and set(active) <= rotating
    engine = FreezeEngine.from_resolved(r)
    model = engine.model
    batches = image_batches(12, size=16)
    starts = [p["start_step"] for p in table["phases"]] + [12]
    model.train()
    for phase, (start, end) in zip(table["phases"], itertools.pairwise(starts), strict=True):
        before = snapshot(model)
        _steps(engine, batches[start:end], start)
        after = snapshot(model)
        changed = {
            r.index.param_group[n] for n in r.index.params if not bits_equal(before[n], after[n])
        }
        last = len(table["groups"]) - 1
        assert changed == set(phase["events"][-1]["active_groups"]) | {last}, phase["index"]
        frozen = [g for g in rotating if g not in phase["events"][-1]["active_groups"]]
        for key in before:  # buffers too: the frozen blocks' BatchNorm stays in eval mode
            owner = key.rsplit(".", 1)[0]
            group = _group_of(r, owner)
            if group in frozen:
                assert bits_equal(before[key], after[key]), key


def _group_of(r, module: str) -> int | None:
    for group in r.index.groups:
        if any(module == m or module.startswith(f"{m}.") for m in group.modules):
            return group.index
    return None


def _steps(engine: FreezeEngine, batches: list[tuple], start: int) -> None:
    for step, (inputs, labels) in enumerate(batches, start=start):
        engine.advance(step)
        torch.nn.functional.cross_entropy(engine.model(inputs), labels).backward()
        engine.before_step()
        engine.optimizer.step()
        engine.after_step()
        engine.optimizer.zero_grad(set_to_none=True)


def test_rotate_resumes_bitwise_from_the_middle_of_an_interval():
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "freeze": {"default": "frozen"},
            "schedule": [ROTATE],
            "hyperparameters": {"epochs": 3, "batch_size": 4, "lr": 1e-2},
        }
    )
    batches = image_batches(12, size=16)
    whole = FreezeEngine.from_resolved(resolved(spec))
    whole.model.train()
    _steps(whole, batches, 0)

    first = FreezeEngine.from_resolved(resolved(spec))
    first.model.train()
    _steps(first, batches[:5], 0)  # inside the third interval
    saved = copy.deepcopy((first.model.state_dict(), first.state_dict()))
    second = FreezeEngine.from_resolved(resolved(spec))
    second.model.load_state_dict(saved[0])
    second.load_state_dict(saved[1])
    second.model.train()
    _steps(second, batches[5:], 5)
    expected, got = whole.model.state_dict(), second.model.state_dict()
    assert all(bits_equal(expected[k], got[k]) for k in expected)


def test_rotate_refuses_more_active_groups_than_it_rotates():
    spec = _spec({"epochs": 2}, {}, schedule=[{**ROTATE, "active": 9}])
    with pytest.raises(SpecError) as caught:
        resolved(spec, meta=True, num_train=24)
    assert caught.value.path == "schedule[0].active"


def test_rotate_refuses_more_intervals_than_the_setting(monkeypatch):
    monkeypatch.setenv("THAW_MAX_ROTATE_INTERVALS", "5")
    get_settings.cache_clear()
    try:
        spec = _spec({"epochs": 4, "batch_size": 4}, {}, schedule=[{**ROTATE, "every_steps": 1}])
        with pytest.raises(SpecError) as caught:
            resolved(spec, meta=True, num_train=24)  # 24 steps of 1
    finally:
        get_settings.cache_clear()
    assert caught.value.path == "schedule[0].every_steps"
    assert "THAW_MAX_ROTATE_INTERVALS" in caught.value.message
    assert caught.value.hint == "use every_steps of at least 5"


def test_accumulating_k_batches_of_b_equals_one_batch_of_k_times_b(tmp_path: Path):
    run_settings = _settings(tmp_path)
    hp = {"epochs": 1, "lr": 0.05, "optimizer": "sgd", "lr_scheduler": "constant"}
    # 24 training samples: batches of 5+5, 5+5, 4 against batches of 10, 10, 4.
    accumulated = _spec({**hp, "batch_size": 5, "grad_accumulation_steps": 2}, {})
    big = _spec({**hp, "batch_size": 10}, {})
    a = train(accumulated, tmp_path / "a", run_settings)
    b = train(big, tmp_path / "b", run_settings)
    assert a.step == b.step == 3
    wa, wb = _weights(tmp_path / "a", 1), _weights(tmp_path / "b", 1)
    assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-5)
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_at_step_counts_optimizer_steps_under_accumulation():
    spec = _spec(
        {"epochs": 2, "batch_size": 4, "grad_accumulation_steps": 3},
        {},
        schedule=[{"at_step": 2, "unfreeze": "layer3"}],
    )
    r = resolved(spec, meta=True, num_train=24)  # 6 batches a epoch: 2 optimizer steps
    assert r.timeline.steps_per_epoch == 2
    assert [p.start_step for p in r.timeline.phases] == [0, 2]
    assert r.timeline.phase_at_epoch(2).index == 1


def test_balanced_class_weights_are_n_over_k_times_count_on_digits():
    labels = load_digits().target[:700]
    classes = [str(d) for d in range(10)]
    spec = _spec({"class_weights": "balanced"}, {})
    weights = class_weight_vector(spec.hyperparameters, classes, labels)
    counts = np.bincount(labels, minlength=10)
    expected = len(labels) / (10 * counts)
    assert weights is not None
    assert weights.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    sklearn = compute_class_weight("balanced", classes=np.arange(10), y=labels)
    assert weights.tolist() == pytest.approx(sklearn.tolist(), rel=1e-6)
    assert balanced_weights([3, 1, 0]) == [4 / 9, 4 / 3, 0.0]  # an absent class weighs 0


def test_explicit_class_weights_default_to_one_and_must_name_known_classes():
    spec = _spec({"class_weights": {"class_1": 3.0}}, {})
    weights = class_weight_vector(spec.hyperparameters, ["class_0", "class_1"], [0, 1])
    assert weights is not None and weights.tolist() == [1.0, 3.0]
    bad = _spec({"class_weights": {"cat": 2.0}}, {})
    with pytest.raises(SpecError) as caught:
        resolve(bad, settings(), DataShape(["dog", "bird"], 24))
    assert caught.value.path == "hyperparameters.class_weights.cat"
    assert "'cat'" in caught.value.message


def test_label_smoothing_and_class_weights_change_the_training_loss(tmp_path: Path):
    run_settings = _settings(tmp_path)
    hp = {"epochs": 1, "lr": 0.05}
    plain = train(_spec(hp, {}), tmp_path / "plain", run_settings)
    smooth = _spec({**hp, "label_smoothing": 0.2, "class_weights": {"class_0": 4.0}}, {})
    steered = train(smooth, tmp_path / "smooth", run_settings)
    assert steered.metrics["train_loss"] != plain.metrics["train_loss"]


def test_monitor_and_plateau_fields_are_checked_with_a_clear_message():
    base = {"base_model": {"source": "torchvision", "name": "resnet18"}}
    modes = {
        m: JobSpec.model_validate({**base, "checkpointing": {"monitor": m}}).checkpointing.mode
        for m in ("val_loss", "train_loss", "val_accuracy", "val_f1_macro")
    }
    assert modes == {
        "val_loss": "min",
        "train_loss": "min",
        "val_accuracy": "max",
        "val_f1_macro": "max",
    }
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({**base, "checkpointing": {"monitor": "val_auc"}})
    assert caught.value.errors()[0]["loc"] == ("checkpointing", "monitor")
    plateau = {"on_plateau": {"patience": 2}, "at_step": 5, "unfreeze": "layer3"}
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({**base, "schedule": [plateau]})
    assert "on_plateau takes 'at_epoch' as its deadline" in str(caught.value)
