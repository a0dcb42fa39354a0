"""A loopback HTTP receiver for webhook tests: records every request, answers from a script."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook as Verifier


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> dict:
        """The payload, after its Standard Webhooks signature checked out with ``secret``."""
        return Verifier(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)
    """Answers to give, in order; 200 once they run out."""
    hold: threading.Event | None = None
    """While set to an unset event, the first request waits for it before answering."""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.received)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {len(got)} requests, not {count}")
            time.sleep(0.05)


@contextmanager
def receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    state = Receiver(url="", statuses=list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with state.lock:
                first = not state.received
                state.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body)
                )
                code = state.statuses.pop(0) if state.statuses else 200
            if first and state.hold is not None:
                state.hold.wait(60)
            self.send_response(code)
            if 300 <= code < 400:  # following it would reach this receiver again
                self.send_header("location", state.url + "/moved")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
