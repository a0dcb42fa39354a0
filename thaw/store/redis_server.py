"""A redis-server process on a free loopback port: ``thaw up``'s embedded Redis and the tests'."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis


def find_redis_server() -> str:
    """The redis-server next to the running interpreter (a venv), else on PATH."""
    beside = Path(sys.executable).parent / "redis-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server not found next to the interpreter or on PATH")
    return found


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(
        self,
        binary: str | None = None,
        start_timeout_s: float = 10.0,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
    ):
        """With ``data_dir`` the server keeps an append-only file there; without, it keeps
        nothing and runs in a temporary folder."""
        self.binary = binary or find_redis_server()
        self.data_dir = data_dir
        self.fixed_port = port
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> str:
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, attempts: int = 5) -> RedisServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="thaw-redis-")
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            self.port = self.fixed_port or free_port()
            if self._launch():
                return self
        log = self.log
        self.stop()
        raise RuntimeError(f"redis-server did not start; log:\n{log}")

    def _launch(self) -> bool:
        assert self._tmp is not None
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir or self._tmp.name),
            "--logfile", str(Path(self._tmp.name) / "redis.log"),
            "--save", "",
            "--appendonly", "yes" if self.data_dir is not None else "no",
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.02)
        finally:
            client.close()
        self._terminate()
        return False

    def _terminate(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def stop(self) -> None:
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
