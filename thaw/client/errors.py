"""An API problem (RFC 9457) as an exception that prints as ``title: detail``."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str, body: dict[str, Any] | None = None):
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body or {}
        super().__init__(f"{title}: {detail}")

    @property
    def code(self) -> str | None:
        return self.body.get("code")


def raise_for_problem(response: httpx.Response) -> None:
    """Raise ``ApiError`` for a 4xx/5xx, from its problem document when it has one."""
    if response.status_code < 400:
        return
    if response.is_stream_consumed is False:
        response.read()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        raise ApiError(response.status_code, body["title"], str(body.get("detail", "")), body)
    text = response.text.strip()[:300] or "no details"
    raise ApiError(response.status_code, response.reason_phrase or "HTTP error", text)
