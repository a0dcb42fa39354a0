"""Fault injection for a worker under test: the whole process stops (SIGSTOP, as a VM
pause would) once its epoch-2 checkpoint is written and its lease checked, right before
the publish that would make it visible; the test sends SIGCONT."""

from __future__ import annotations

import os
import signal

from thaw.checkpoints import store

_real_publish = store.publish
_stalled = False


def _publish(run_dir, token, staged, update=None, confirm=None):
    global _stalled
    if not _stalled and any(final.name == "epoch-2" for final in staged):
        _stalled = True
        os.kill(os.getpid(), signal.SIGSTOP)
    return _real_publish(run_dir, token, staged, update, confirm)


store.publish = _publish
