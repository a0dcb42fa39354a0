"""The FastAPI application: routers, problem+json errors, stores opened per app."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service.api.openapi import install_openapi
from service.api.pages import install_pages
from service.api.queue import enqueuer, task_sender
from service.api.routers import (
    checkpoints,
    datasets,
    evaluations,
    events,
    exports,
    health,
    job_metrics,
    jobs,
    models,
    plans,
    predictions,
    webhooks,
    workers,
)
from service.api.spec_pool import SpecPool
from service.api.sse import StreamSlots, async_client
from service.api.stores import Stores
from service.auth.keys import ApiKeys
from service.auth.throttle import FailureThrottle
from service.http.body_limit import JsonBodyLimit
from service.http.head import HeadAsGet
from service.http.problems import install_problem_handlers
from service.http.security_headers import SecurityHeaders
from service.metrics import install_metrics
from thaw.settings import Settings, get_settings

log = logging.getLogger("thaw.api")

DESCRIPTION = """Fine-tune PyTorch models with exact control of what is frozen and when it thaws.

Submit a job spec, follow its events, read the per-layer trainable status and download
checkpoints. Errors are RFC 9457 `application/problem+json` documents. With API keys
configured, every `/v1` call needs `Authorization: Bearer <key>`.
"""


def _warm_up() -> None:
    """Import the model stack once so the first plan or submit does not pay for it."""
    from thaw.freezing.resolve import resolve  # noqa: F401
    from thaw.models.torchvision_source import builder_names

    builder_names()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # The API never contacts a model hub; only workers download (THAW_ALLOW_HUB_DOWNLOADS).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    api_keys = ApiKeys.parse(settings.api_keys, settings.admin_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(_warm_up)
        except Exception:
            log.exception("warm-up failed; the first request will load the model stack")
        yield
        app.state.spec_pool.close()
        await app.state.aredis.aclose()
        app.state.stores.close()

    app = FastAPI(
        title="Thaw",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.api_keys = api_keys
    app.state.auth_failures = FailureThrottle(settings)
    app.state.stores = Stores.open(settings)
    app.state.enqueue = enqueuer(settings)
    app.state.send_task = task_sender(settings)
    app.state.spec_pool = SpecPool(settings)
    app.state.aredis = async_client(settings.redis_url)
    app.state.stream_slots = StreamSlots(
        app.state.stores.client,
        app.state.aredis,
        settings.sse_max_streams_per_tenant,
        settings.sse_keepalive_seconds,
    )
    install_problem_handlers(app)
    app.add_middleware(JsonBodyLimit, limit=settings.max_json_body_bytes)
    routers = (health, models, plans, datasets, jobs, job_metrics, events, checkpoints, workers)
    for module in (*routers, evaluations, predictions, exports, webhooks):
        app.include_router(module.router)
    install_pages(app)
    install_openapi(app, settings, keys_enabled=api_keys.enabled)
    install_metrics(app, app.state.stores, settings.queue)
    app.add_middleware(HeadAsGet)
    app.add_middleware(SecurityHeaders)
    if settings.trusted_proxies.strip():
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app
