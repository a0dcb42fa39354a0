"""A client that goes away leaves no warning or traceback in the API's log: a closed event
stream, an upload cut off mid-body; and ``thaw`` ends quietly when its reader closes the pipe."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import redis
from api_fixtures import ApiServer, files_under, job_body

BOUNDARY = "quietboundary"


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_closing_event_streams_logs_nothing(api: ApiServer, http: httpx.Client) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]  # queued: the stream stays
    logged = len(api.log())
    store = redis.Redis.from_url(api.redis_url)
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
                sock.sendall(
                    f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: x\r\n"
                    "Accept: text/event-stream\r\n\r\n".encode()
                )
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            # the server notices at its next keepalive and gives the stream's slot back
            _wait_for(lambda: store.zcard("thaw:streams:default") == 0, "the stream to end")
    finally:
        store.close()
    assert api.log()[logged:] == ""


def test_an_upload_cut_off_mid_body_logs_no_traceback(api: ApiServer) -> None:
    logged = len(api.log())
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
        "Content-Type: text/csv\r\n\r\ntext,label\r\n" + "hello,a\r\n" * 1000
    ).encode()
    head = (
        "POST /v1/datasets HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(part) + 50_000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(head + part)
        _wait_for(lambda: files_under(api.uploads_dir / ".incoming") != [], "the spool")
    _wait_for(lambda: files_under(api.uploads_dir / ".incoming") == [], "the spool's removal")
    assert api.log()[logged:] == ""


def test_thaw_ends_quietly_when_the_pipe_closes(api: ApiServer, http: httpx.Client) -> None:
    job_id = http.post("/v1/jobs", json=job_body()).json()["id"]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written (`| head -0`)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "thaw.cli", "jobs", "get", job_id, "--api-url", api.url],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141
