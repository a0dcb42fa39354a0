"""Spec resolution off the event loop: a bounded pool of its own and a deadline per request.

Building a model on ``meta`` and resolving selectors is CPU work; running it in its own
few threads keeps a flood of plans from taking the threads that every other route uses, and
the deadline makes a slow spec cost its own request only.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.http.problems import Problem
from thaw.settings import Settings

T = TypeVar("T")


class SpecPool:
    def __init__(self, settings: Settings):
        self._executor = ThreadPoolExecutor(
            max_workers=settings.plan_workers, thread_name_prefix="thaw-spec"
        )
        self._timeout = settings.plan_timeout_seconds

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``fn(*args, **kwargs)`` in the pool; 503 if it has not finished by the deadline.

        A call still waiting for a thread at the deadline never starts."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, call), self._timeout)
        except TimeoutError:
            raise Problem(
                503,
                f"resolving the spec took longer than {self._timeout:g} s "
                "(THAW_PLAN_TIMEOUT_SECONDS); retry, or simplify the spec",
                code="spec_timeout",
                headers={"Retry-After": "5"},
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
