"""A real uvicorn process serving the API against a real Redis, driven over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from redis_server import RedisDatabases

from service.api.app import create_app
from thaw.settings import Settings
from thaw.store.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
IN_PROCESS_URL = "http://testserver"
IN_PROCESS_CLIENT = ("127.0.0.1", 50000)
KEYS = {"alice": "key-alice-0123456789", "bob": "key-bob-9876543210"}
START_TIMEOUT_S = 90.0
MAX_UPLOAD_BYTES = 300_000
MAX_ARCHIVE_MEMBERS = 60
DEFAULT_ENV = {
    "THAW_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    "THAW_MAX_ARCHIVE_MEMBERS": str(MAX_ARCHIVE_MEMBERS),
}
KEYED_ENV = {
    "THAW_API_KEYS": ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
    "THAW_AUTH_FAILURES_MAX": "1000000",
}


@dataclass
class ApiServer:
    """One ``uvicorn --factory service.api.app:create_app`` process and its folders."""

    redis_url: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def jobs_dir(self) -> Path:
        return Settings(data_dir=self.data_dir).jobs_dir

    @property
    def uploads_dir(self) -> Path:
        return Settings(data_dir=self.data_dir).uploads_dir

    def settings_env(self) -> dict[str, str]:
        return {
            "THAW_REDIS_URL": self.redis_url,
            "THAW_DATA_DIR": str(self.data_dir),
            "THAW_MODELS_DIR": str(self.root / "models"),
            "THAW_DATASETS_DIR": str(self.root / "datasets"),
            "THAW_API_KEYS": "",
            "THAW_SSE_KEEPALIVE_SECONDS": "0.5",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **self.env,
        }

    def start(self) -> ApiServer:
        for sub in ("data", "models", "datasets"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("THAW_")}
        env.update(self.settings_env())
        self.port = free_port()
        self.log_path = self.root / f"uvicorn-{self.port}.log"
        args = [
            sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            "--no-proxy-headers",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"API server did not answer /healthz:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def client(
        self, key: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Client:
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        sent.update(headers or {})
        return httpx.Client(base_url=self.url, headers=sent, timeout=30.0, **kwargs)

    def reset(self) -> None:
        """Empty its Redis database and its data folder between tests."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
        for sub in ("jobs", "datasets"):
            shutil.rmtree(self.data_dir / sub, ignore_errors=True)


class _Borrowed(TestClient):
    """A client on an app another client has started: leaving its ``with`` leaves the app up."""

    def __enter__(self) -> _Borrowed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessApi(ApiServer):
    """``create_app(settings)`` served in this process through Starlette's TestClient, with
    ApiServer's surface, for route logic that needs neither a worker nor a second process."""

    app_client: TestClient | None = None

    @property
    def url(self) -> str:
        return IN_PROCESS_URL

    def settings(self) -> Settings:
        env = self.settings_env()
        return Settings(**{k[5:].lower(): v for k, v in env.items() if k.startswith("THAW_")})

    def start(self) -> InProcessApi:
        for sub in ("data", "models", "datasets"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.app_client = TestClient(create_app(self.settings()), client=IN_PROCESS_CLIENT)
        self.app_client.__enter__()  # the app's lifespan: warm-up now, stores closed on stop
        return self

    def stop(self) -> None:
        if self.app_client is not None:
            self.app_client.__exit__(None, None, None)
            self.app_client = None

    def log(self) -> str:
        return ""

    def client(
        self, key: str | None = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Client:
        assert self.app_client is not None, "the in-process app is not started"
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        sent.update(headers or {})
        borrowed = _Borrowed(
            self.app_client.app,
            base_url=IN_PROCESS_URL,
            raise_server_exceptions=False,  # a 500 answers as it would over HTTP
            headers=sent,
            client=IN_PROCESS_CLIENT,
            **kwargs,
        )
        borrowed.portal = self.app_client.portal  # the started app's event loop
        return borrowed


class ApiServers:
    """The one way tests start API servers: each on its own temporary folders and, unless it
    must share one, its own Redis database lent by the session, stopped and given back on exit."""

    def __init__(self, databases: RedisDatabases) -> None:
        self._databases = databases

    @contextmanager
    def serving(
        self,
        env: dict[str, str] | None = None,
        *,
        redis_url: str | None = None,
        root: Path | None = None,
        kind: type[ApiServer] = ApiServer,
    ) -> Iterator[ApiServer]:
        """``env`` adds THAW_ settings; ``redis_url`` shares another server's or a stack's
        database; ``root`` serves that folder (a stack's) instead of a fresh one; ``kind``
        InProcessApi serves the app in this process."""
        with ExitStack() as cleanup:
            if redis_url is None:
                redis_url = cleanup.enter_context(self._databases.lend())
            if root is None:
                root = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="thaw-api-")))
            server = kind(redis_url, root, env=dict(env or {}))
            cleanup.callback(server.stop)
            yield server.start()

    def in_process(self, env: dict[str, str] | None = None, **where: Any) -> Any:
        """``serving`` with the app in this process (see InProcessApi)."""
        return self.serving(env, kind=InProcessApi, **where)


@pytest.fixture(scope="session")
def api_servers(redis_databases: RedisDatabases) -> ApiServers:
    return ApiServers(redis_databases)


def _server_or_app(request: pytest.FixtureRequest, name: str) -> ApiServer:
    """The uvicorn fixture ``name``, or its in-process twin in a module marked in_process."""
    in_process = request.node.get_closest_marker("in_process") is not None
    server = request.getfixturevalue(f"{name}_app" if in_process else name)
    server.reset()
    return server


@pytest.fixture(scope="session")
def api_server(api_servers: ApiServers) -> Iterator[ApiServer]:
    """No API keys (tenant ``default``), small upload limits."""
    with api_servers.serving(DEFAULT_ENV) as server:
        yield server


@pytest.fixture(scope="session")
def api_server_app(api_servers: ApiServers) -> Iterator[ApiServer]:
    with api_servers.in_process(DEFAULT_ENV) as app:
        yield app


@pytest.fixture
def api(request: pytest.FixtureRequest) -> ApiServer:
    """``api_server`` emptied for this test (in this process in modules marked in_process)."""
    return _server_or_app(request, "api_server")


@pytest.fixture
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as client:
        yield client


@pytest.fixture
def store(api: ApiServer) -> Iterator[redis.Redis]:
    """A client on the API server's Redis database, for the stores used directly."""
    client = redis.Redis.from_url(api.redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def keyed_server(api_servers: ApiServers) -> Iterator[ApiServer]:
    """Tenants ``alice`` and ``bob`` with their keys. Every test sends from 127.0.0.1, so the
    failed-key throttle is set out of reach here; its own tests use a server of their own."""
    with api_servers.serving(KEYED_ENV) as server:
        yield server


@pytest.fixture(scope="session")
def keyed_server_app(api_servers: ApiServers) -> Iterator[ApiServer]:
    with api_servers.in_process(KEYED_ENV) as app:
        yield app


@pytest.fixture
def keyed(request: pytest.FixtureRequest) -> ApiServer:
    """``keyed_server`` emptied for this test (in this process in modules marked in_process)."""
    return _server_or_app(request, "keyed_server")


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "resnet18-smoke",
        "base_model": {"source": "torchvision", "name": "resnet18", "weights": None},
        "dataset": {"synthetic": {"num_classes": 4, "num_examples": 64}},
        "freeze": {
            "default": "frozen",
            "rules": [
                {"match": "layer4", "trainable": True},
                {"match": "fc", "trainable": True},
            ],
        },
        "schedule": [{"at_epoch": 2, "unfreeze": ["layer3"], "lr": 1e-4}],
        "hyperparameters": {"epochs": 3, "batch_size": 16},
    }
    body.update(overrides)
    return body


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of a response that must have ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:thaw:problem:")
    return body


def files_under(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
