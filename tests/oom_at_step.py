"""Fault injection for a worker under test: a job named ``oom`` runs out of memory in the
forward and backward of its third batch, as a GPU does when a batch no longer fits."""

from __future__ import annotations

import torch

from thaw.training import run

OOM_AT_STEP = 3
_real_backward = run._Run._backward


def _backward(self, inputs, labels, batch):
    if self.spec.name == "oom":
        self._oom_steps = getattr(self, "_oom_steps", 0) + 1
        if self._oom_steps == OOM_AT_STEP:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return _real_backward(self, inputs, labels, batch)


run._Run._backward = _backward
