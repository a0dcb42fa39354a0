"""The job spec on its own: defaults, unknown fields, events, presets, fingerprint."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from pydantic import ValidationError

from thaw.spec import FineTunePreset, GradualPreset, JobSpec, ScheduleEvent

MINIMAL = {"base_model": {"source": "torchvision", "name": "resnet18"}}

NORMALIZED_MINIMAL = {
    "name": "job",
    "base_model": {
        "source": "torchvision",
        "name": "resnet18",
        "weights": None,
        "weights_file": None,
        "checkpoint": "best",
    },
    "dataset": {
        "id": None,
        "path": None,
        "format": None,
        "synthetic": {"num_classes": 10, "num_examples": 256},
        "validation": None,
    },
    "freeze": {
        "default": "frozen",
        "rules": [],
        "batchnorm": "follow",
        "method": "requires_grad",
        "dropout": "follow",
    },
    "schedule": [],
    "hyperparameters": {
        "epochs": 3,
        "batch_size": 32,
        "optimizer": "adamw",
        "lr": 0.001,
        "weight_decay": 0.01,
        "momentum": 0.9,
        "lr_scheduler": "cosine",
        "warmup_steps": 0,
        "step_size_epochs": 1,
        "gamma": 0.1,
        "layer_lr_decay": None,
        "param_groups": [],
        "grad_clip_norm": None,
        "image_size": 224,
        "max_length": 128,
        "precision": "auto",
        "num_workers": None,
        "seed": 0,
        "feature_cache": "auto",
        "augment": "none",
        "class_weights": None,
        "label_smoothing": 0.0,
        "grad_accumulation_steps": 1,
    },
    "checkpointing": {
        "monitor": "val_loss",
        "mode": "min",
        "early_stopping": None,
        "every_epochs": 1,
        "keep_last": 2,
        "every_steps": None,
    },
    "metadata": {},
    "integrations": [],
}

FULL = {
    "name": "digits-resnet18",
    "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
    "dataset": {"synthetic": {"num_classes": 4, "num_examples": 64}, "validation": {"split": 0.2}},
    "freeze": {
        "default": "frozen",
        "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
        "batchnorm": "follow",
        "method": "requires_grad",
    },
    "schedule": [
        {"at_epoch": 3, "unfreeze": ["layer3"], "lr": 1e-4},
        {"at_epoch": 5, "unfreeze": ["group:0:"], "lr_mult": 0.1},
    ],
    "hyperparameters": {"epochs": 6, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.01},
    "checkpointing": {"every_epochs": 1, "keep_last": 2},
    "metadata": {"team": "vision", "run": 3},
}


def _errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(body)
    return info.value.errors()


def _with(path: tuple, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(base or FULL)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_minimal_spec_normalizes_to_every_default():
    assert JobSpec.model_validate(MINIMAL).normalized() == NORMALIZED_MINIMAL


def test_normalized_spec_validates_back_to_itself():
    spec = JobSpec.model_validate(FULL)
    again = JobSpec.model_validate(spec.normalized())
    assert again == spec
    assert again.normalized() == spec.normalized()


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        (("surprise",), ("surprise",)),
        (("base_model", "revision"), ("base_model", "revision")),
        (("dataset", "shuffle"), ("dataset", "shuffle")),
        (("freeze", "strategy"), ("freeze", "strategy")),
        (("freeze", "rules", 0, "lr"), ("freeze", "rules", 0, "lr")),
        (("schedule", 0, "at"), ("schedule", 0, "event", "at")),
        (("hyperparameters", "compile"), ("hyperparameters", "compile")),
        (("checkpointing", "every_batches"), ("checkpointing", "every_batches")),
    ],
)
def test_unknown_fields_are_rejected_at_every_level(path, loc):
    errors = _errors(_with(path, 1))
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, "extra_forbidden")]


@pytest.mark.parametrize(
    ("preset", "extra", "tag"),
    [
        ({"preset": "gradual"}, "freeze_epochs", "gradual"),
        ({"preset": "fine_tune"}, "every_epochs", "fine_tune"),
    ],
)
def test_preset_fields_are_not_shared_between_presets(preset, extra, tag):
    errors = _errors(_with(("schedule",), [{**preset, extra: 1}]))
    assert [(e["loc"], e["type"]) for e in errors] == [
        (("schedule", 0, tag, extra), "extra_forbidden")
    ]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"at_epoch": 2, "at_step": 5, "unfreeze": ["layer3"]},
            "give exactly one of 'at_epoch' or 'at_step'",
        ),
        ({"unfreeze": ["layer3"]}, "give exactly one of 'at_epoch' or 'at_step'"),
        ({"at_epoch": 2}, "an event needs 'unfreeze' or 'freeze' selectors"),
        (
            {"at_epoch": 2, "unfreeze": [], "freeze": []},
            "an event needs 'unfreeze' or 'freeze' selectors",
        ),
        (
            {"at_epoch": 2, "unfreeze": ["layer3"], "lr": 1e-4, "lr_mult": 0.1},
            "give either 'lr' or 'lr_mult', not both",
        ),
        (
            {"at_epoch": 2, "freeze": ["layer4"], "lr": 1e-4},
            "'lr' and 'lr_mult' set the learning rate of unfrozen parameters",
        ),
        (
            {"at_epoch": 2, "freeze": ["layer4"], "lr_mult": 0.5},
            "'lr' and 'lr_mult' set the learning rate of unfrozen parameters",
        ),
    ],
)
def test_event_validation(event, message):
    errors = _errors(_with(("schedule",), [event]))
    assert len(errors) == 1
    assert errors[0]["loc"] == ("schedule", 0, "event")
    assert errors[0]["type"] == "value_error"
    assert errors[0]["msg"] == f"Value error, {message}"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"at_epoch": 0, "unfreeze": ["layer3"]}, "at_epoch"),
        ({"at_step": 0, "unfreeze": ["layer3"]}, "at_step"),
        ({"at_epoch": 2, "unfreeze": ["layer3"], "lr": -1.0}, "lr"),
        ({"at_epoch": 2, "unfreeze": [""]}, "unfreeze"),
    ],
)
def test_event_field_bounds(event, field):
    errors = _errors(_with(("schedule",), [event]))
    assert [e["loc"][:4] for e in errors] == [("schedule", 0, "event", field)]


def test_presets_are_told_apart_by_their_name():
    spec = JobSpec.model_validate(
        _with(
            ("schedule",),
            [
                {"preset": "gradual", "every_epochs": 2},
                {"preset": "fine_tune", "freeze_epochs": 3, "lr_mult": 0.5},
                {"at_step": 7, "freeze": "layer4"},
            ],
        )
    )
    gradual, fine_tune, event = spec.schedule
    assert isinstance(gradual, GradualPreset)
    assert (gradual.every_epochs, gradual.lr_mult) == (2, None)
    assert isinstance(fine_tune, FineTunePreset)
    assert (fine_tune.freeze_epochs, fine_tune.lr_mult) == (3, 0.5)
    assert isinstance(event, ScheduleEvent)
    assert (event.at_step, event.freeze, event.unfreeze) == (7, ["layer4"], [])
    assert spec.normalized()["schedule"][:2] == [
        {"preset": "gradual", "every_epochs": 2, "lr_mult": None},
        {"preset": "fine_tune", "freeze_epochs": 3, "lr_mult": 0.5},
    ]


def test_preset_defaults():
    spec = JobSpec.model_validate(
        _with(("schedule",), [{"preset": "gradual"}, {"preset": "fine_tune"}])
    )
    assert spec.normalized()["schedule"] == [
        {"preset": "gradual", "every_epochs": 1, "lr_mult": None},
        {"preset": "fine_tune", "freeze_epochs": 1, "lr_mult": None},
    ]


def test_unknown_preset_is_rejected():
    errors = _errors(_with(("schedule",), [{"preset": "slanted", "every_epochs": 1}]))
    assert [(e["loc"], e["type"]) for e in errors] == [(("schedule", 0), "union_tag_invalid")]
    assert "'slanted'" in errors[0]["msg"]
    assert "'event', 'gradual', 'fine_tune'" in errors[0]["msg"]


def test_unfreeze_and_freeze_strings_become_lists():
    spec = JobSpec.model_validate(
        _with(
            ("schedule",), [{"at_epoch": 3, "unfreeze": "layer3"}, {"at_epoch": 4, "freeze": "fc"}]
        )
    )
    assert spec.normalized()["schedule"] == [
        {
            "at_epoch": 3,
            "at_step": None,
            "unfreeze": ["layer3"],
            "freeze": [],
            "lr": None,
            "lr_mult": None,
            "on_plateau": None,
        },
        {
            "at_epoch": 4,
            "at_step": None,
            "unfreeze": [],
            "freeze": ["fc"],
            "lr": None,
            "lr_mult": None,
            "on_plateau": None,
        },
    ]


def test_fingerprint_is_stable_across_key_order_and_explicit_defaults():
    spec = JobSpec.model_validate(FULL)
    shuffled = JobSpec.model_validate(_reversed_keys(FULL))
    assert list(_reversed_keys(FULL)) != list(FULL)
    assert shuffled.fingerprint() == spec.fingerprint()
    explicit = JobSpec.model_validate(spec.normalized())
    assert explicit.fingerprint() == spec.fingerprint()

    normalized = spec.normalized()
    assert normalized.pop("integrations") == []  # they report the run, not change it
    body = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
    assert spec.fingerprint() == hashlib.sha256(body.encode()).hexdigest()
    assert len(spec.fingerprint()) == 64


def test_fingerprint_changes_with_any_value():
    spec = JobSpec.model_validate(FULL)
    changed = [
        _with(("hyperparameters", "lr"), 2e-3),
        _with(("freeze", "rules"), list(reversed(FULL["freeze"]["rules"]))),
        _with(("schedule", 0, "at_epoch"), 4),
        _with(("metadata", "run"), 4),
    ]
    prints = {JobSpec.model_validate(body).fingerprint() for body in changed}
    assert len(prints) == len(changed)
    assert spec.fingerprint() not in prints


def test_weights_and_weights_file_are_exclusive():
    body = _with(
        ("base_model",),
        {
            "source": "torchvision",
            "name": "resnet18",
            "weights": "DEFAULT",
            "weights_file": "r18.safetensors",
        },
    )
    errors = _errors(body)
    assert [(e["loc"], e["msg"]) for e in errors] == [
        (("base_model",), "Value error, give either 'weights' or 'weights_file', not both")
    ]
    for one in ({"weights": "DEFAULT"}, {"weights_file": "r18.safetensors"}):
        ref = {"source": "torchvision", "name": "resnet18", **one}
        assert (
            JobSpec.model_validate(_with(("base_model",), ref)).base_model.model_dump(
                include=set(one)
            )
            == one
        )


def test_weights_enum_is_for_torchvision_only():
    errors = _errors(
        _with(("base_model",), {"source": "huggingface", "name": "model", "weights": "DEFAULT"})
    )
    assert [e["loc"] for e in errors] == [("base_model",)]
    assert "use it with source 'torchvision'" in errors[0]["msg"]


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({}, "give exactly one of 'id', 'path' or 'synthetic'"),
        ({"id": "ds_1", "synthetic": {}}, "give exactly one of 'id', 'path' or 'synthetic'"),
        ({"id": "ds_1", "format": "csv"}, "'format' goes with 'path' only"),
    ],
)
def test_dataset_reference_is_one_source(dataset, message):
    errors = _errors(_with(("dataset",), dataset))
    assert [(e["loc"], e["msg"]) for e in errors] == [(("dataset",), f"Value error, {message}")]


def test_spec_is_immutable():
    spec = JobSpec.model_validate(FULL)
    with pytest.raises(ValidationError):
        spec.hyperparameters.lr = 1.0  # type: ignore[misc]
