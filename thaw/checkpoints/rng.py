"""Capture and restore every random number generator a training run draws from."""

from __future__ import annotations

import random
from typing import Any

import torch

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with torch wheels
    np = None  # type: ignore[assignment]


def capture_rng_state() -> dict[str, Any]:
    """torch CPU, CUDA (only if already initialized), python ``random`` and numpy states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if np is not None:
        state["numpy"] = np.random.get_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; missing parts are left as they are."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    if "python" in state:
        random.setstate(_as_tuples(state["python"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, index)
    if state.get("numpy") is not None and np is not None:
        np.random.set_state(_as_tuples(state["numpy"]))


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` needs tuples; a state that went through JSON may hold lists."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value
