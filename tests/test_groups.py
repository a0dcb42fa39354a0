"""Layer groups: named blocks from input to output, covering every parameter exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torchvision
from support import group_layout, minilm_spec, resolved
from torch import nn

from thaw.freezing.groups import derive_groups
from thaw.freezing.model_index import ModelIndex, index_model
from thaw.models import build_model
from thaw.settings import Settings
from thaw.spec import BaseModelRef

SETTINGS = Settings(models_dir=Path("/nonexistent"))
TORCHVISION_BUILDERS = sorted(torchvision.models.list_models(module=torchvision.models))


def _index(name: str, num_classes: int = 10) -> tuple[ModelIndex, str]:
    built = build_model(BaseModelRef(source="torchvision", name=name), num_classes, SETTINGS)
    return index_model(built.model, built.head), built.head


def _singles(*names: str) -> list[tuple[str, list[str]]]:
    return [(n, [n]) for n in names]


def _assert_partition(index: ModelIndex, head: str) -> None:
    """Every parameter in exactly one group; groups ordered from input to output."""
    owners: dict[str, list[int]] = {name: [] for name in index.params}
    for group in index.groups:
        for module in group.modules:
            members = [module] if module in index.params else index.module_params[module]
            for name in members:
                owners[name].append(group.index)
    assert {n: g for n, g in owners.items() if len(g) != 1} == {}
    assert {n: g[0] for n, g in owners.items()} == index.param_group

    assert [g.index for g in index.groups] == list(range(len(index.groups)))
    order = [index.param_group[name] for name in index.params]
    assert order == sorted(order)
    assert order[0] == 0
    head_groups = {index.param_group[n] for n in index.module_params[head]}
    assert head_groups == {len(index.groups) - 1}


def test_resnet18_groups():
    index, head = _index("resnet18")
    assert group_layout(index) == [
        ("stem", ["conv1", "bn1"]),
        *_singles("layer1", "layer2", "layer3", "layer4", "fc"),
    ]
    assert index.groups[0].to_dict() == {
        "index": 0,
        "name": "stem",
        "modules": ["conv1", "bn1"],
    }
    assert index.group_params(0) == ["conv1.weight", "bn1.weight", "bn1.bias"]
    _assert_partition(index, head)


def test_minilm_groups():
    r = resolved(minilm_spec(), meta=True)
    assert group_layout(r.index) == _singles(
        "bert.embeddings",
        *(f"bert.encoder.layer.{i}" for i in range(6)),
        "bert.pooler",
        "classifier",
    )
    assert r.index.group_params(0) == [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.embeddings.LayerNorm.bias",
    ]
    assert len(r.index.group_params(1)) == 16
    _assert_partition(r.index, r.built.head)


def test_vit_b_16_groups():
    index, head = _index("vit_b_16")
    assert head == "heads.head"
    assert group_layout(index) == [
        ("stem", ["class_token", "conv_proj", "encoder.pos_embedding"]),
        *_singles(*(f"encoder.layers.encoder_layer_{i}" for i in range(12))),
        ("heads", ["encoder.ln", "heads"]),
    ]
    _assert_partition(index, head)


def test_mobilenet_v2_groups():
    index, head = _index("mobilenet_v2")
    assert group_layout(index) == _singles(*(f"features.{i}" for i in range(19)), "classifier")
    _assert_partition(index, head)


def test_convnext_tiny_groups():
    index, head = _index("convnext_tiny")
    assert head == "classifier.2"
    assert group_layout(index) == _singles(*(f"features.{i}" for i in range(8)), "classifier")
    _assert_partition(index, head)


def test_densenet121_groups():
    index, head = _index("densenet121")
    blocks = [f"features.{kind}{i}" for i in range(1, 4) for kind in ("denseblock", "transition")]
    assert group_layout(index) == [
        ("stem", ["features.conv0", "features.norm0"]),
        *_singles(*blocks, "features.denseblock4"),
        ("classifier", ["features.norm5", "classifier"]),
    ]
    _assert_partition(index, head)


def test_vgg11_groups():
    index, head = _index("vgg11")
    convs = [0, 3, 6, 8, 11, 13, 16, 18]
    assert group_layout(index) == _singles(*(f"features.{i}" for i in convs), "classifier")
    _assert_partition(index, head)


def test_efficientnet_b0_groups():
    index, head = _index("efficientnet_b0")
    assert group_layout(index) == _singles(*(f"features.{i}" for i in range(9)), "classifier")
    _assert_partition(index, head)


def test_tiny_sequential_groups():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8)),
        nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8)),
        nn.Flatten(),
        nn.LayerNorm(8),
        nn.Linear(8, 3),
    )
    index = index_model(model, "7")
    layout = [("stem", ["0", "1"]), ("3", ["3"]), ("4", ["4"]), ("7", ["6", "7"])]
    assert group_layout(index) == layout
    _assert_partition(index, "7")


def test_flat_sequential_gives_one_group_per_layer():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    groups = derive_groups(model, "4")
    assert [(g.index, g.name, g.modules) for g in groups] == [
        (0, "0", ("0",)),
        (1, "2", ("2",)),
        (2, "4", ("4",)),
    ]


def test_wrapper_modules_are_opened_and_parameters_on_the_root_kept():
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cls = nn.Parameter(torch.zeros(1, 1, 8))
            self.backbone = nn.Sequential(
                nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)),
                nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)),
                nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)),
            )
            self.head = nn.Linear(8, 2)

    index = index_model(Wrapped(), "head")
    assert group_layout(index) == [
        ("cls", ["cls"]),
        *_singles("backbone.0", "backbone.1", "backbone.2", "head"),
    ]
    _assert_partition(index, "head")


def test_a_large_embedding_table_does_not_hide_the_block_stack():
    class TextModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.ModuleDict(
                {"tokens": nn.Embedding(50_000, 16), "norm": nn.LayerNorm(16)}
            )
            self.encoder = nn.ModuleList(
                nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16)) for _ in range(3)
            )
            self.classifier = nn.Linear(16, 2)

    with torch.device("meta"):
        model = TextModel()
    index = index_model(model, "classifier")
    singles = _singles("embed", "encoder.0", "encoder.1", "encoder.2", "classifier")
    assert group_layout(index) == singles


@pytest.mark.parametrize("name", TORCHVISION_BUILDERS)
def test_every_torchvision_builder_is_partitioned_in_order(name):
    start = time.perf_counter()
    index, head = _index(name)
    elapsed = time.perf_counter() - start
    if elapsed > 2.0:
        print(f"{name}: meta build and index took {elapsed:.1f} s")
    assert all(p.is_meta for p in index.params.values())
    assert len(index.groups) >= 3
    _assert_partition(index, head)
    assert next(iter(index.params)) in index.group_params(0)


def test_the_builder_list_is_the_full_classification_set():
    assert len(TORCHVISION_BUILDERS) == 80
    assert {"resnet18", "vit_b_16", "regnet_y_128gf", "maxvit_t"} <= set(TORCHVISION_BUILDERS)
