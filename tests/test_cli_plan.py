"""``thaw plan SPEC.json`` as a user runs it: a fresh process, JSON on stdout, one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from support import minilm_dir

from thaw.store import DatasetStore

ROW_KEYS = {
    "name",
    "type",
    "group",
    "params",
    "trainable_params",
    "trainable",
    "lr",
    "mode",
    "thawed_in",
}
RESNET50 = {
    "name": "r50-plan",
    "base_model": {"source": "torchvision", "name": "resnet50", "weights": None},
    "dataset": {"synthetic": {"num_classes": 10, "num_examples": 64}},
    "freeze": {
        "default": "frozen",
        "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
    },
    "schedule": [
        {"at_epoch": 2, "unfreeze": ["layer3"], "lr": 1e-4},
        {"at_epoch": 3, "unfreeze": "fc"},
    ],
    "hyperparameters": {"epochs": 3, "batch_size": 16, "lr": 1e-3},
}
MINILM = {
    "base_model": {"source": "huggingface", "name": "model"},
    "dataset": {"synthetic": {"num_classes": 3, "num_examples": 40}},
    "schedule": [{"preset": "gradual", "every_epochs": 1}],
    "hyperparameters": {"epochs": 3, "batch_size": 8, "lr": 1e-3},
}
RESNET50_LAYER4 = 14_964_736
RESNET50_LAYER3 = 7_098_368
RESNET50_FC = 2048 * 10 + 10
RESNET50_TOTAL = 23_528_522


def _plan(
    tmp_path: Path, spec: Any, label: str, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{label}.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "THAW_MODELS_DIR": str(minilm_dir().parent),
        "THAW_DATASETS_DIR": str(tmp_path / "datasets"),
        "THAW_DATA_DIR": str(tmp_path / "data"),
        **(env or {}),
    }
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "thaw.cli", "plan", str(path), *flags],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    print(f"thaw plan {label}: {time.perf_counter() - start:.2f} s wall, imports included")
    return done


def _ok(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return json.loads(done.stdout)


def _rows(epoch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in epoch["layers"]}


def test_plan_resnet50(tmp_path):
    plan = _ok(_plan(tmp_path, RESNET50, "resnet50"))

    assert plan["model"] == {
        "source": "torchvision",
        "name": "resnet50",
        "num_classes": 10,
        "head": "fc",
    }
    assert plan["groups"] == [
        {"index": 0, "name": "stem", "modules": ["conv1", "bn1"]},
        *({"index": i, "name": f"layer{i}", "modules": [f"layer{i}"]} for i in range(1, 5)),
        {"index": 5, "name": "fc", "modules": ["fc"]},
    ]
    assert plan["warnings"] == [
        "schedule[1] (event, epoch 3) changes nothing: every parameter it names is already "
        "in the state it asks for"
    ]
    assert plan["steps_per_epoch"] == 4
    assert [(p["index"], p["start_step"], p["start_epoch"]) for p in plan["phases"]] == [
        (0, 0, 1),
        (1, 4, 2),
        (2, 8, 3),
    ]

    epochs = plan["epochs"]
    assert [(e["epoch"], e["phase"]) for e in epochs] == [(1, 0), (2, 1), (3, 2)]
    first = RESNET50_LAYER4 + RESNET50_FC
    thawed = first + RESNET50_LAYER3
    assert [e["trainable_params"] for e in epochs] == [first, thawed, thawed]
    assert {e["total_params"] for e in epochs} == {RESNET50_TOTAL}
    for epoch in epochs:
        assert len(epoch["layers"]) == 107
        for row in epoch["layers"]:
            assert set(row) == ROW_KEYS, row["name"]
        assert sum(r["params"] for r in epoch["layers"]) == RESNET50_TOTAL

    one, two = _rows(epochs[0]), _rows(epochs[1])
    assert one["conv1"] == {
        "name": "conv1",
        "type": "Conv2d",
        "group": 0,
        "params": 9408,
        "trainable_params": 0,
        "trainable": "frozen",
        "lr": None,
        "mode": "train",
        "thawed_in": None,
    }
    assert one["bn1"]["mode"] == "eval"
    assert one["layer4.0.conv1"] == {
        "name": "layer4.0.conv1",
        "type": "Conv2d",
        "group": 4,
        "params": 524288,
        "trainable_params": 524288,
        "trainable": "trainable",
        "lr": 0.001,
        "mode": "train",
        "thawed_in": 0,
    }
    assert one["layer3.0.bn1"]["mode"] == "eval"
    assert one["layer3.0.conv1"]["trainable"] == "frozen"
    assert two["layer3.0.bn1"] == {
        "name": "layer3.0.bn1",
        "type": "BatchNorm2d",
        "group": 3,
        "params": 512,
        "trainable_params": 512,
        "trainable": "trainable",
        "lr": 0.0001,
        "mode": "train",
        "thawed_in": 1,
    }
    assert two["fc"] == {
        "name": "fc",
        "type": "Linear",
        "group": 5,
        "params": RESNET50_FC,
        "trainable_params": RESNET50_FC,
        "trainable": "trainable",
        "lr": 0.001,
        "mode": "train",
        "thawed_in": 0,
    }


def test_plan_minilm_gradual(tmp_path):
    plan = _ok(_plan(tmp_path, MINILM, "minilm"))

    assert plan["model"]["head"] == "classifier"
    assert [g["name"] for g in plan["groups"]] == [
        "bert.embeddings",
        *(f"bert.encoder.layer.{i}" for i in range(6)),
        "bert.pooler",
        "classifier",
    ]
    assert plan["warnings"] == []
    assert plan["steps_per_epoch"] == 4
    classifier = 384 * 3 + 3
    pooler = 384 * 384 + 384
    layer = 1_774_464
    assert [e["trainable_params"] for e in plan["epochs"]] == [
        classifier,
        classifier + pooler,
        classifier + pooler + layer,
    ]
    assert {e["total_params"] for e in plan["epochs"]} == {22_714_371}
    for epoch in plan["epochs"]:
        assert len(epoch["layers"]) == 54
        for row in epoch["layers"]:
            assert set(row) == ROW_KEYS, row["name"]
    third = _rows(plan["epochs"][2])
    assert {n for n, r in third.items() if r["trainable"] != "frozen"} == {
        "classifier",
        "bert.pooler.dense",
        *(n for n in third if n.startswith("bert.encoder.layer.5.")),
    }
    assert third["bert.encoder.layer.5.attention.self.query"]["thawed_in"] == 2
    assert third["bert.pooler.dense"]["thawed_in"] == 1
    assert third["classifier"]["thawed_in"] == 0
    assert third["bert.encoder.layer.4.output.dense"]["trainable"] == "frozen"
    assert third["bert.embeddings.word_embeddings"] == {
        "name": "bert.embeddings.word_embeddings",
        "type": "Embedding",
        "group": 0,
        "params": 30522 * 384,
        "trainable_params": 0,
        "trainable": "frozen",
        "lr": None,
        "mode": "train",
        "thawed_in": None,
    }


def _with(**changes: Any) -> dict[str, Any]:
    return {**RESNET50, **changes}


@pytest.mark.parametrize(
    ("label", "spec", "expected"),
    [
        ("bad-json", '{"base_model": {"source": "torchvision",', ["bad-json.json is not JSON"]),
        (
            "unknown-field",
            _with(hyperparameters={"epochs": 3, "compile": True}),
            ["hyperparameters.compile: Extra inputs are not permitted"],
        ),
        (
            "unknown-event-field",
            _with(schedule=[{"at_epoch": 2, "unfreeze": "layer3", "when": 1}]),
            ["schedule[0].when: Extra inputs are not permitted"],
        ),
        (
            "selector-matches-nothing",
            _with(freeze={"rules": [{"match": "layr4", "trainable": True}]}),
            ["freeze.rules[0].match: selector 'layr4' matches no parameter", "layer4"],
        ),
        (
            "event-past-last-epoch",
            _with(schedule=[{"at_epoch": 4, "unfreeze": ["layer3"]}]),
            ["schedule[0].at_epoch: at_epoch 4 is past the last epoch (3)"],
        ),
    ],
)
def test_invalid_spec_exits_2_with_one_line_naming_the_field(tmp_path, label, spec, expected):
    done = _plan(tmp_path, spec, label)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert done.stderr.endswith("\n")
    assert lines[0].startswith("thaw: error: ")
    for text in expected:
        assert text in lines[0]


UPLOADED = {
    "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
    "dataset": {"id": "ds_0123456789abcdef01234567"},
    "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
    "hyperparameters": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
}


def _fc_params(plan: dict[str, Any]) -> int:
    return next(r["params"] for r in plan["epochs"][0]["layers"] if r["name"] == "fc")


def test_plan_looks_an_uploaded_dataset_up_in_the_store(
    tmp_path, redis_url: str, redis_client: redis.Redis
) -> None:
    DatasetStore(redis_client).create("alice", {
        "id": UPLOADED["dataset"]["id"], "name": "four", "format": "image_folder",
        "num_examples": 40, "classes": ["a", "b", "c", "d"],
        "class_counts": {"a": 10, "b": 10, "c": 10, "d": 10}, "size_bytes": 1, "sha256": "0" * 64,
        "path": "x",
    })  # fmt: skip
    plan = _ok(_plan(tmp_path, UPLOADED, "uploaded", env={"THAW_REDIS_URL": redis_url}))
    assert _fc_params(plan) == 512 * 4 + 4


def test_plan_without_the_store_says_how_or_takes_the_classes(tmp_path) -> None:
    nowhere = {"THAW_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = _plan(tmp_path, UPLOADED, "unreachable", env=nowhere)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "thaw: error: dataset.id: uploaded dataset 'ds_0123456789abcdef01234567' cannot be "
        "looked up here: the store (THAW_REDIS_URL) does not answer (plan it with POST "
        "/v1/plans, set THAW_REDIS_URL to the service's Redis, or give its classes: thaw plan "
        "SPEC --classes a,b,c [--examples N])\n"
    )
    plan = _ok(_plan(tmp_path, UPLOADED, "classes", "--classes", "cat,dog,eel", env=nowhere))
    assert _fc_params(plan) == 512 * 3 + 3
