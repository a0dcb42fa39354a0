"""Thaw: fine-tune PyTorch models with exact control of what is frozen and when it thaws."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__version__ = "0.1.0"


def load_model(folder: Any, device: str = "cpu", settings: Any = None) -> nn.Module:
    """Rebuild a fine-tuned model from a checkpoint folder (``.../checkpoints/best``), or
    from its ``adapter/`` folder: the base model (found through ``settings``, by default
    the environment's) with the adapter on it, as a PEFT model."""
    # Here, not above: ``import thaw`` stays light; torch and the model stack load on use.
    from thaw.models.loading import load_model as _load
    from thaw.settings import get_settings

    return _load(folder, device, settings or get_settings())
