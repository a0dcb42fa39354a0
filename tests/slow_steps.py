"""Fault injection for a worker under test: every optimizer step takes a quarter second
longer, so a signal sent inside an epoch lands inside it however fast the machine is."""

from __future__ import annotations

import time

from thaw.training import run

STEP_DELAY_S = 0.25
_real_step = run._Run._train_step


def _train_step(self, inputs, labels):
    time.sleep(STEP_DELAY_S)
    return _real_step(self, inputs, labels)


run._Run._train_step = _train_step
