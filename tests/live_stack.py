"""A whole service for end-to-end tests: Redis, a `thaw worker`, uvicorn, digits and weights."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from api_fixtures import ApiServer, ApiServers
from worker_fixtures import Stack, write_base_weights, write_digits


@dataclass
class Live:
    stack: Stack
    api: ApiServer

    @property
    def url(self) -> str:
        return self.api.url


@pytest.fixture
def live(stack: Stack, api_servers: ApiServers) -> Iterator[Live]:
    """The API and one worker on the same Redis and data folder; ``datasets/digits`` (20 per
    class, 32x32) and ``models/resnet18-base.safetensors`` in place for ``digits_spec``."""
    write_base_weights(stack.root / "models")
    write_digits(stack.root / "datasets", per_class=20)
    stack.start_worker("w")
    env = {"THAW_PROGRESS_INTERVAL_SECONDS": "0"}
    with api_servers.serving(env, redis_url=stack.redis_url, root=stack.root) as api:
        yield Live(stack, api)
