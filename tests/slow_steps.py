"""Fault injection for a worker under test: every optimizer step takes a quarter second
longer, so a signal sent inside an epoch lands inside it however fast the machine is."""

from __future__ import annotations

import time

from thaw.training import run

STEP_DELAY_S = 0.25
_real_step = run._Run._optimizer_step


def _optimizer_step(self):
    time.sleep(STEP_DELAY_S)
    return _real_step(self)


run._Run._optimizer_step = _optimizer_step
