"""A client for the Thaw HTTP API (httpx); the ``thaw`` commands submit, jobs, logs, layers,
download and datasets are built on it. It imports neither the service nor the worker.

Names load on first use, so ``thaw plan`` does not import httpx."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ThawClient": "thaw.client.api",
    "ApiError": "thaw.client.errors",
    "ChecksumMismatch": "thaw.client.download",
    "DownloadedFile": "thaw.client.download",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'thaw.client' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
