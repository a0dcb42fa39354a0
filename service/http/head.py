"""HEAD wherever GET is served: the GET route answers, its body is dropped."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyDropped(Exception):
    """Stops the GET once the headers are out, so a HEAD reads no file to its end."""


class HeadAsGet:
    """Runs a HEAD request as a GET and sends only the status and headers. A HEAD never
    opens an event stream: it gets the headers of the JSON page instead."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept"]
        scope = {**scope, "method": "GET", "headers": headers}
        ended = False

        async def send_headers_only(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                if ended:
                    raise _BodyDropped
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                if message.get("more_body", False):
                    raise _BodyDropped

        try:
            await self.app(scope, receive, send_headers_only)
        except* _BodyDropped:
            pass
