"""How a stored job reaches a worker: the task name both sides agree on, and the callable
that sends it (the API and the worker's sweeper each bring their own sender)."""

from __future__ import annotations

from collections.abc import Callable

TRAIN_TASK = "thaw.train"
# Work on a finished job's checkpoint; the argument is the record's id.
CHECKPOINT_TASKS = {
    "evaluation": "thaw.evaluate",
    "prediction": "thaw.predict",
    "export": "thaw.export",
}

Enqueue = Callable[[str], None]
"""Send job ``id`` to the training queue; raises if the broker cannot take it."""

SendTask = Callable[[str, str, float | None], None]
"""Send checkpoint task ``(kind, record id, expires in seconds or None)`` to the queue."""

# kombu's Redis transport keeps a queue as one list, plus one per priority step.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def broker_queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s waiting messages."""
    return [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]
