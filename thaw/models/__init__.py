"""Model registry: build a base model for N classes, on `meta` for validation or for real."""

from thaw.models.built import BuiltModel
from thaw.models.registry import available_sources, build_model

__all__ = ["BuiltModel", "available_sources", "build_model"]
