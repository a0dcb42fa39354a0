"""timm models on the meta device: groups from timm's group_matcher, heads, data config,
norms without weight decay and the BatchNorm policy, with no weights and no download."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import group_layout
from torch import nn

from thaw.data.shape import DataShape
from thaw.freezing.model_index import BATCHNORM_TYPES, ModelIndex, index_model
from thaw.freezing.param_options import base_options
from thaw.freezing.resolve import resolve
from thaw.models import build_model
from thaw.settings import Settings
from thaw.spec import BaseModelRef, Hyperparameters, JobSpec

SETTINGS = Settings(models_dir=Path("/nonexistent"))
ARCHITECTURES = [
    "resnet18", "resnet50", "convnext_tiny", "vit_small_patch16_224", "efficientnet_b0",
    "mobilenetv3_large_100", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
    "regnety_008", "densenet121", "mobilevit_s", "levit_128", "resnetv2_50x1_bit",
]  # fmt: skip


def _index(name: str) -> tuple[ModelIndex, str]:
    built = build_model(BaseModelRef(source="timm", name=name), 10, SETTINGS)
    assert all(p.is_meta for p in built.model.parameters())
    return index_model(built.model, built.head), built.head


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_groups_partition_every_parameter_input_to_output(name: str) -> None:
    index, head = _index(name)
    assert len(index.groups) >= 3
    owners = {p: [] for p in index.params}
    for group in index.groups:
        for module in group.modules:
            for p in [module] if module in index.params else index.module_params[module]:
                owners[p].append(group.index)
    assert {p: g for p, g in owners.items() if len(g) != 1} == {}
    order = [index.param_group[p] for p in index.params]
    assert order == sorted(order)
    assert {index.param_group[p] for p in index.module_params[head]} == {len(index.groups) - 1}
    assert index.params[f"{head}.weight"].shape[0] == 10


def test_groups_come_from_timm_group_matcher() -> None:
    convnext, _ = _index("convnext_tiny")
    assert group_layout(convnext) == [
        ("stem", ["stem"]), ("stages.0", ["stages.0"]), ("stages.1", ["stages.1"]),
        ("stages.2", ["stages.2"]), ("stages.3", ["stages.3"]), ("head", ["head"]),
    ]  # fmt: skip
    vit, head = _index("vit_small_patch16_224")
    assert head == "head"
    assert group_layout(vit)[0] == ("stem", ["cls_token", "pos_embed", "patch_embed"])
    assert [g.name for g in vit.groups[1:13]] == [f"blocks.{i}" for i in range(12)]
    assert group_layout(vit)[-1] == ("head", ["head"])
    levit, _ = _index("levit_128")
    assert group_layout(levit)[-1] == ("head", ["head", "head_dist"])


def test_input_size_mean_std_interpolation_from_timm_data_config() -> None:
    vit = build_model(BaseModelRef(source="timm", name="vit_small_patch16_224"), 3, SETTINGS)
    assert (vit.image_size, vit.fixed_image_size) == (224, 224)
    assert (vit.mean, vit.std, vit.interpolation) == ((0.5,) * 3, (0.5,) * 3, "bicubic")
    assert not vit.convolutional
    net = build_model(BaseModelRef(source="timm", name="mobilevit_s"), 3, SETTINGS)
    assert (net.image_size, net.fixed_image_size, net.convolutional) == (256, None, True)
    assert net.mean == (0.0, 0.0, 0.0)


def test_fixed_input_size_is_checked_at_submit() -> None:
    from thaw.errors import SpecError

    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "timm", "name": "vit_small_patch16_224"},
            "freeze": {"default": "trainable"},
            "hyperparameters": {"image_size": 32},
        }
    )
    with pytest.raises(SpecError) as caught:
        resolve(spec, SETTINGS, DataShape(["a", "b"], 8))
    assert caught.value.path == "hyperparameters.image_size"
    assert caught.value.one_line() == (
        "hyperparameters.image_size: vit_small_patch16_224 takes 224x224 images only, not 32 "
        "(set image_size to 224)"
    )


@pytest.mark.parametrize(
    ("name", "norm"),
    [
        ("vit_small_patch16_224", nn.LayerNorm),
        ("convnext_tiny", nn.LayerNorm),
        ("resnetv2_50x1_bit", nn.GroupNorm),
        ("efficientnet_b0", nn.BatchNorm2d),
    ],
)
def test_no_weight_decay_on_norms_biases_and_declared_tokens(name: str, norm: type) -> None:
    index, _ = _index(name)
    options = base_options(index, Hyperparameters(weight_decay=0.05), Settings())
    norm_params = [
        f"{m}.{p}"
        for m, module in index.model.named_modules()
        if isinstance(module, norm)
        for p, _ in module.named_parameters(recurse=False)
    ]
    assert norm_params
    assert {options[p].weight_decay for p in norm_params} == {0.0}
    assert {options[p].weight_decay for p in index.params if p.endswith(".bias")} == {0.0}
    weights = [p for p, t in index.params.items() if t.ndim > 1 and p not in index.no_decay]
    assert {options[p].weight_decay for p in weights} == {0.05}
    if name.startswith("vit"):
        assert index.no_decay == {"cls_token", "pos_embed"}
        assert options["pos_embed"].weight_decay == 0.0


def test_timm_batchnorm_variants_follow_the_batchnorm_policy() -> None:
    index, _ = _index("efficientnet_b0")
    bn_act = [m for m, mod in index.model.named_modules() if type(mod).__name__ == "BatchNormAct2d"]
    assert bn_act
    assert set(bn_act) <= set(index.batchnorms)
    assert all(isinstance(index.model.get_submodule(m), BATCHNORM_TYPES) for m in bn_act)
