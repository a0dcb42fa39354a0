"""Fault injection for a worker under test: a job named ``oom`` runs out of memory at its
third optimizer step, as a GPU does when a batch no longer fits."""

from __future__ import annotations

import torch

from thaw.training import run

OOM_AT_STEP = 3
_real_step = run._Run._train_step


def _train_step(self, inputs, labels):
    if self.spec.name == "oom":
        self._oom_steps = getattr(self, "_oom_steps", 0) + 1
        if self._oom_steps == OOM_AT_STEP:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return _real_step(self, inputs, labels)


run._Run._train_step = _train_step
