"""Prometheus ``/metrics``: requests by route and status with their latency, counted as
they pass; queue depth, jobs by status and the workers' heartbeats, read from Redis at
each scrape. With API keys configured, a scrape needs one: a tenant's key shows that
tenant's jobs and the workers running them, an admin key (THAW_ADMIN_KEYS) everything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.deps import get_caller
from service.api.routers.workers import runs_for
from service.api.stores import Stores
from service.auth.keys import Caller
from thaw.dispatch import broker_queue_keys
from thaw.job_status import JobStatus

UNMATCHED = "unmatched"


class StoreCollector(Collector):
    """Gauges read from the job store and the broker when Prometheus scrapes: cluster-wide,
    or (``tenant`` given) only that tenant's jobs and the workers running them."""

    def __init__(self, stores: Stores, queue: str, tenant: str | None = None):
        self.stores = stores
        self.queue = queue
        self.tenant = tenant

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("thaw_store_up", "1 when Redis answered this scrape.")
        try:
            families = list(self._from_store())
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _queue_depth(self) -> int:
        pipe = self.stores.client.pipeline(transaction=False)
        for key in broker_queue_keys(self.queue):
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())

    def _from_store(self) -> Iterator[Any]:
        keys = self.stores.jobs.keys
        if self.tenant is None:
            depth = GaugeMetricFamily(
                "thaw_queue_depth", "Messages waiting in the training queue.", labels=["queue"]
            )
            depth.add_metric([self.queue], self._queue_depth())
            yield depth

        jobs = GaugeMetricFamily("thaw_jobs", "Jobs in the store by status.", labels=["status"])
        pipe = self.stores.client.pipeline(transaction=False)
        for status in JobStatus:
            if self.tenant is None:
                pipe.zcard(keys.jobs_by_status(status.value))
            else:
                pipe.zcard(keys.jobs_by_tenant_status(self.tenant, status.value))
        for status, count in zip(JobStatus, pipe.execute(), strict=True):
            jobs.add_metric([status.value], int(count))
        yield jobs

        live = self.stores.workers.live()
        if self.tenant is None:
            count = GaugeMetricFamily("thaw_workers_live", "Workers with a live heartbeat.")
            count.add_metric([], len(live))
            yield count
        else:
            live = [(i, info) for i, info in live if runs_for(info, Caller(self.tenant))]
        yield from _worker_families(live)


def _worker_families(live: list[tuple[str, dict[str, Any]]]) -> Iterator[Any]:
    labels = ["worker", "gpu"]
    busy = GaugeMetricFamily("thaw_worker_busy", "1 while the worker trains a job.", labels=labels)
    done = CounterMetricFamily(
        "thaw_worker_jobs_done", "Jobs the worker process has finished.", labels=labels
    )
    rate = GaugeMetricFamily(
        "thaw_worker_samples_per_second", "Training samples/s of the running job.", labels=labels
    )
    step = GaugeMetricFamily(
        "thaw_worker_step_seconds", "Recent seconds per optimizer step.", labels=labels
    )
    memory = GaugeMetricFamily(
        "thaw_worker_memory_bytes",
        "Device memory in use (allocated, reserved on a GPU; rss on the CPU).",
        labels=[*labels, "kind"],
    )
    for worker_id, info in live:
        values = [str(info.get("name") or worker_id), str(info.get("gpu") or "")]
        busy.add_metric(values, 1 if info.get("job") else 0)
        done.add_metric(values, int(info.get("jobs_done") or 0))
        if info.get("samples_per_s") is not None:
            rate.add_metric(values, float(info["samples_per_s"]))
        if info.get("step_time_s") is not None:
            step.add_metric(values, float(info["step_time_s"]))
        for kind, value in (info.get("memory") or {}).items():
            if value is not None:
                memory.add_metric([*values, kind], float(value))
    yield from (busy, done, rate, step, memory)


class Metrics:
    """The app's own registry (not the process-global one), so apps do not collide."""

    def __init__(self, stores: Stores, queue: str):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "thaw_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "thaw_http_request_duration_seconds",
            "Seconds from a request to its response's first byte.",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(stores, queue))

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or UNMATCHED
        method = scope.get("method", "")
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(method, path).observe(seconds)


class MetricsMiddleware:
    """Counts every HTTP request once its status is known (SSE streams at their start)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = False

        async def send_and_count(message: Message) -> None:
            nonlocal seen
            if message["type"] == "http.response.start" and not seen:
                seen = True
                self.metrics.observe(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            if not seen:
                self.metrics.observe(scope, 500, time.perf_counter() - started)


def install_metrics(app: FastAPI, stores: Stores, queue: str) -> None:
    """The request-counting middleware and ``GET /metrics`` on ``app``."""
    state = Metrics(stores, queue)
    app.state.metrics = state
    app.add_middleware(MetricsMiddleware, metrics=state)

    @app.get("/metrics", include_in_schema=False)
    def scrape(caller: Annotated[Caller, Depends(get_caller)]) -> Response:
        if caller.admin:
            return Response(render(state.registry), media_type=CONTENT_TYPE_LATEST)
        assert caller.tenant is not None
        own = CollectorRegistry(auto_describe=False)
        own.register(StoreCollector(stores, queue, tenant=caller.tenant))
        return Response(render(own), media_type=CONTENT_TYPE_LATEST)
