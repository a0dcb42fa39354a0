"""Selectors on real model structures (built on meta) and on a small custom module."""

from __future__ import annotations

import pytest
import torch
from support import make_spec, minilm_spec, resolved
from torch import nn

from thaw.errors import SelectorError
from thaw.freezing.model_index import ModelIndex, index_model
from thaw.freezing.selectors import closest_names, select
from thaw.settings import Settings

RULE = ("freeze", "rules", 0, "match")
LIMITS = Settings()


@pytest.fixture(scope="module")
def resnet() -> ModelIndex:
    return resolved(make_spec(), meta=True).index


@pytest.fixture(scope="module")
def minilm() -> ModelIndex:
    return resolved(minilm_spec(), meta=True).index


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.body(x * self.scale)))


@pytest.fixture(scope="module")
def tiny() -> ModelIndex:
    return index_model(Tiny(), "head")


def _under(index: ModelIndex, *prefixes: str) -> list[str]:
    return [n for n in index.params if n.startswith(tuple(f"{p}." for p in prefixes))]


def test_module_path_selects_all_its_parameters_in_model_order(resnet):
    names = select(resnet, "layer4", RULE, LIMITS)
    assert names == _under(resnet, "layer4")
    assert len(names) == 15
    assert names[:3] == ["layer4.0.conv1.weight", "layer4.0.bn1.weight", "layer4.0.bn1.bias"]
    assert select(resnet, "layer4.0.downsample", RULE, LIMITS) == [
        "layer4.0.downsample.0.weight",
        "layer4.0.downsample.1.weight",
        "layer4.0.downsample.1.bias",
    ]
    assert select(resnet, "fc", RULE, LIMITS) == ["fc.weight", "fc.bias"]


def test_exact_parameter_name_selects_only_that_parameter(resnet):
    assert select(resnet, "fc.weight", RULE, LIMITS) == ["fc.weight"]
    assert select(resnet, "layer1.0.bn1.bias", RULE, LIMITS) == ["layer1.0.bn1.bias"]
    assert select(resnet, "  fc.bias ", RULE, LIMITS) == ["fc.bias"]


def test_glob_over_names(resnet):
    biases = select(resnet, "*.bias", RULE, LIMITS)
    assert biases == [n for n in resnet.params if n.endswith(".bias")]
    assert len(biases) == 21
    assert biases[0] == "bn1.bias" and biases[-1] == "fc.bias"

    upper = select(resnet, "layer[34].*", RULE, LIMITS)
    assert upper == _under(resnet, "layer3", "layer4")
    assert len(upper) == 30
    assert select(resnet, "layer?.0.conv1.weight", RULE, LIMITS) == [
        f"layer{i}.0.conv1.weight" for i in range(1, 5)
    ]


def test_glob_on_bert_layers(minilm):
    names = select(minilm, "bert.encoder.layer.[45].*", RULE, LIMITS)
    assert names == _under(minilm, "bert.encoder.layer.4", "bert.encoder.layer.5")
    assert len(names) == 32
    assert names[0] == "bert.encoder.layer.4.attention.self.query.weight"
    assert names[-1] == "bert.encoder.layer.5.output.LayerNorm.bias"


def test_regex_is_a_full_match(resnet):
    layer4 = _under(resnet, "layer4")
    assert select(resnet, r"re:layer4\..*", RULE, LIMITS) == layer4
    assert select(resnet, "re:layer4", RULE, LIMITS) == layer4
    assert select(resnet, r"re:layer\d\.\d\.bn2\.weight", RULE, LIMITS) == [
        f"layer{i}.{j}.bn2.weight" for i in range(1, 5) for j in range(2)
    ]
    with pytest.raises(SelectorError) as info:
        select(resnet, "re:ayer4", RULE, LIMITS)
    assert info.value.path == "freeze.rules[0].match"


def test_type_selects_weights_and_biases_of_every_module_of_that_class(resnet):
    names = select(resnet, "type:BatchNorm2d", RULE, LIMITS)
    batchnorms = [m for m, t in resnet.module_types.items() if t == "BatchNorm2d"]
    assert len(batchnorms) == 20
    assert names == [f"{m}.{p}" for m in batchnorms for p in ("weight", "bias")]
    assert select(resnet, "type:Linear", RULE, LIMITS) == ["fc.weight", "fc.bias"]


def test_group_selectors(resnet):
    assert [g.name for g in resnet.groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert select(resnet, "group:0", RULE, LIMITS) == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert select(resnet, "group:-1", RULE, LIMITS) == ["fc.weight", "fc.bias"]
    assert select(resnet, "group:5", RULE, LIMITS) == ["fc.weight", "fc.bias"]
    assert select(resnet, "group:1:3", RULE, LIMITS) == _under(resnet, "layer1", "layer2")
    assert select(resnet, "group:4:", RULE, LIMITS) == [
        *_under(resnet, "layer4"),
        "fc.weight",
        "fc.bias",
    ]
    assert select(resnet, "group::2", RULE, LIMITS) == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        *_under(resnet, "layer1"),
    ]
    assert select(resnet, "group:-2:", RULE, LIMITS) == select(resnet, "group:4:", RULE, LIMITS)
    assert select(resnet, "group:0:", RULE, LIMITS) == list(resnet.params)


def test_selectors_on_a_custom_module(tiny):
    assert list(tiny.params) == [
        "scale",
        "body.0.weight",
        "body.0.bias",
        "body.2.weight",
        "body.2.bias",
        "norm.weight",
        "norm.bias",
        "head.weight",
        "head.bias",
    ]
    assert select(tiny, "scale", RULE, LIMITS) == ["scale"]
    assert select(tiny, "body", RULE, LIMITS) == [
        "body.0.weight",
        "body.0.bias",
        "body.2.weight",
        "body.2.bias",
    ]
    assert select(tiny, "*.weight", RULE, LIMITS) == [
        "body.0.weight",
        "body.2.weight",
        "norm.weight",
        "head.weight",
    ]
    assert select(tiny, "type:Linear", RULE, LIMITS) == [
        "body.0.weight",
        "body.0.bias",
        "body.2.weight",
        "body.2.bias",
        "head.weight",
        "head.bias",
    ]
    assert select(tiny, "type:LayerNorm", RULE, LIMITS) == ["norm.weight", "norm.bias"]
    assert select(tiny, "re:body\\.[02]\\.bias", RULE, LIMITS) == ["body.0.bias", "body.2.bias"]
    assert select(tiny, "group:0", RULE, LIMITS) == ["scale"]
    assert select(tiny, "group:-1", RULE, LIMITS) == ["head.weight", "head.bias"]


def test_no_match_names_the_selector_and_the_closest_names(resnet):
    with pytest.raises(SelectorError) as info:
        select(resnet, "layr4", RULE, LIMITS)
    err = info.value
    assert err.path == "freeze.rules[0].match"
    assert err.loc == RULE
    assert err.closest[0] == "layer4"
    assert 1 <= len(err.closest) <= 5
    assert err.closest == closest_names(resnet, "layr4")
    assert err.message == "selector 'layr4' matches no parameter"
    assert str(err).startswith("freeze.rules[0].match: selector 'layr4' matches no parameter")
    assert "closest names: layer4" in str(err)


def test_no_match_path_from_resolve_points_at_the_rule_or_event():
    spec = make_spec(
        freeze={
            "default": "frozen",
            "rules": [{"match": "fc", "trainable": True}, {"match": "layer9", "trainable": True}],
        }
    )
    with pytest.raises(SelectorError) as info:
        resolved(spec, meta=True)
    assert info.value.path == "freeze.rules[1].match"
    assert info.value.closest[0] in {"layer1", "layer2", "layer3", "layer4"}

    spec = make_spec(schedule=[{"at_epoch": 2, "unfreeze": ["layer3", "layre2"]}])
    with pytest.raises(SelectorError) as info:
        resolved(spec, meta=True)
    assert info.value.path == "schedule[0].unfreeze[1]"
    assert info.value.closest[0] == "layer2"

    spec = make_spec(
        hyperparameters={"epochs": 2, "param_groups": [{"match": "fc.wieght", "lr": 0.1}]}
    )
    with pytest.raises(SelectorError) as info:
        resolved(spec, meta=True)
    assert info.value.path == "hyperparameters.param_groups[0].match"
    assert info.value.closest[0] == "fc.weight"


def test_bad_glob(resnet):
    with pytest.raises(SelectorError) as info:
        select(resnet, "layer[4", RULE, LIMITS)
    assert info.value.path == "freeze.rules[0].match"
    assert info.value.message == "bad glob 'layer[4': unclosed or empty '[...]'"
    with pytest.raises(SelectorError, match="nested"):
        select(resnet, "layer[[4]", RULE, LIMITS)
    with pytest.raises(SelectorError, match="empty"):
        select(resnet, "layer[]4", RULE, LIMITS)


def test_bad_regex(resnet):
    with pytest.raises(SelectorError) as info:
        select(resnet, "re:(", RULE, LIMITS)
    assert info.value.path == "freeze.rules[0].match"
    assert info.value.message.startswith("bad regular expression '(': ")


def test_unknown_type_lists_the_closest_types(resnet):
    with pytest.raises(SelectorError) as info:
        select(resnet, "type:BatchNorm9d", RULE, LIMITS)
    err = info.value
    assert err.path == "freeze.rules[0].match"
    assert err.message == "the model has no module of type 'BatchNorm9d'"
    assert err.closest[0] == "BatchNorm2d"
    assert len(err.closest) <= 5
    assert set(err.closest) <= set(resnet.module_types.values())


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("group:9", "group 9 is out of range"),
        ("group:6", "group 6 is out of range"),
        ("group:-7", "group -7 is out of range"),
        ("group:5:2", "'group:5:2' selects no group"),
        ("group:6:", "'group:6:' selects no group"),
        ("group:x", "bad group selector 'group:x'"),
        ("group:", "bad group selector 'group:'"),
        ("group:1:2:3", "bad group selector 'group:1:2:3'"),
        ("group:1.5", "bad group selector 'group:1.5'"),
    ],
)
def test_bad_group_selectors(resnet, selector, message):
    with pytest.raises(SelectorError) as info:
        select(resnet, selector, RULE, LIMITS)
    err = info.value
    assert err.path == "freeze.rules[0].match"
    assert err.message == message
    assert "the model has 6 groups, 0..5" in (err.hint or "")
