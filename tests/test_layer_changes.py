"""Which layers differ from the base weights, bit for bit."""

from __future__ import annotations

import pytest
import torch

from thaw.training.layer_changes import changed_layers, same_bits


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool]
)
def test_equal_bits_are_the_same(dtype: torch.dtype) -> None:
    a = torch.arange(12).reshape(3, 4).to(dtype)
    assert same_bits(a, a.clone())
    assert same_bits(a.t(), a.t().contiguous())


def test_bits_not_values_decide() -> None:
    nan = torch.tensor([float("nan"), 0.0])
    assert same_bits(nan, nan.clone())  # NaN == NaN bit for bit
    assert not same_bits(nan, torch.tensor([float("nan"), -0.0]))  # -0.0 is other bits
    assert not same_bits(torch.zeros(4), torch.zeros(4, dtype=torch.int32))
    assert not same_bits(torch.zeros(4), torch.zeros(2, 2))
    one_ulp = torch.nextafter(torch.tensor([1.0]), torch.tensor([2.0]))
    assert not same_bits(torch.tensor([1.0]), one_ulp)


def test_changed_layers_name_the_owning_module() -> None:
    base = {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2), "scale": torch.ones(1)}
    current = {k: v.clone() for k, v in base.items()}
    assert changed_layers(current, base) == set()
    current["fc.bias"][0] = 1e-30
    current["scale"][0] = float("nan")
    assert changed_layers(current, base) == {"fc", "scale"}
