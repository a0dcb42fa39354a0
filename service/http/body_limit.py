"""A size limit on request bodies other than uploads: 413 before the body is parsed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.problems import Problem, problem_response

_MULTIPART = b"multipart/form-data"


class JsonBodyLimit:
    """Refuse a non-multipart body over ``limit`` bytes, by its Content-Length or as it
    streams in; multipart uploads are bounded by THAW_MAX_UPLOAD_BYTES instead."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-type", b"").lower().startswith(_MULTIPART):
            await self.app(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:  # at most ``limit`` bytes are held before the 413
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(bytes(body), message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), None, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem(
            413,
            f"the request body is larger than {self.limit} bytes (THAW_MAX_JSON_BODY_BYTES); "
            "send a smaller document",
            code="body_too_large",
            limit=self.limit,
        )
        await problem_response(problem)(scope, receive, send)


def _replay(body: bytes, pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body, then whatever comes next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent, pending
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replay
