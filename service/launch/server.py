"""Run the API with uvicorn (``thaw api``)."""

from __future__ import annotations

import ipaddress
import socket

from service.auth.keys import ApiKeys
from thaw.settings import Settings, get_settings


class UnsafeBind(Exception):
    """Binding a non-loopback address while the API has no keys."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_bind(host: str, settings: Settings) -> None:
    if ApiKeys.parse(settings.api_keys, settings.admin_keys).enabled or is_loopback(host):
        return
    raise UnsafeBind(
        f"refusing to listen on {host!r} without API keys: anyone who can reach it could "
        "run jobs. Set THAW_API_KEYS=tenant:key (comma-separated pairs) or bind 127.0.0.1"
    )


def serve(
    host: str | None = None, port: int | None = None, settings: Settings | None = None
) -> None:
    """Serve until interrupted; raises UnsafeBind before binding anything unsafe."""
    import uvicorn

    from service.api.app import create_app

    settings = settings or get_settings()
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    check_bind(host, settings)
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=False, log_level="info")
