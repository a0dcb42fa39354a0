"""How a stored job reaches a worker: the task name both sides agree on, and the callable
that sends it (the API and the worker's sweeper each bring their own sender)."""

from __future__ import annotations

from collections.abc import Callable

TRAIN_TASK = "thaw.train"

Enqueue = Callable[[str], None]
"""Send job ``id`` to the training queue; raises if the broker cannot take it."""
