"""Checkpoint writes off the training thread: one commit in the background at a time.

The trainer snapshots its state (a CPU copy), hands the write and the fenced commit to
:class:`BackgroundCommit` and trains on. The next save waits for the previous one, so at
most one is in flight. What follows a commit (events, the layer status) runs on the
training thread, the next time it polls, so reporters are only ever called from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class BackgroundCommit:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._then: Callable[[Any], None] | None = None
        self._result: Any = None
        self._error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def submit(self, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Run ``work`` in the background once the previous commit is done and its
        ``then`` has run; ``then(result)`` runs on this thread when ``work`` is done."""
        self.wait()
        self._then, self._result, self._error = then, None, None
        self._thread = threading.Thread(
            target=self._run, args=(work,), name="checkpoint-commit", daemon=True
        )
        self._thread.start()

    def poll(self) -> None:
        """Finish a commit that is done (its ``then``, or its error raised here); never waits."""
        if self._thread is not None and not self._thread.is_alive():
            self.wait()

    def wait(self) -> None:
        """Wait for the commit in flight, then run its ``then`` or raise its error."""
        thread = self._thread
        if thread is None:
            return
        thread.join()
        self._thread = None
        then, result, error = self._then, self._result, self._error
        self._then, self._result, self._error = None, None, None
        if error is not None:
            raise error
        assert then is not None
        then(result)

    def abandon(self) -> None:
        """Wait for the commit in flight and drop its outcome (the run already failed)."""
        if self._thread is not None:
            self._thread.join()
        self._thread, self._then, self._result, self._error = None, None, None, None

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self._result = work()
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc
