"""``thaw up``: embedded Redis, one worker and the API as child processes of one command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from thaw.settings import get_settings
from thaw.store.redis_server import RedisServer


def run_stack(host: str | None, port: int | None, data_dir: Path | None) -> int:
    # SIGTERM (docker stop, systemd, kill) must unwind like Ctrl-C so the children go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    settings = get_settings()
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    data = (data_dir or settings.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    with RedisServer(data_dir=data / "redis") as redis_server:
        env = {
            **os.environ,
            "THAW_REDIS_URL": redis_server.url,
            "THAW_DATA_DIR": str(data),
        }
        cli = [sys.executable, "-m", "thaw.cli"]
        worker = subprocess.Popen([*cli, "worker"], env=env)
        api = subprocess.Popen([*cli, "api", "--host", host, "--port", str(port)], env=env)
        print(
            f"thaw: API on http://{host}:{port} (Redis {redis_server.url}, data {data})",
            file=sys.stderr,
        )
        try:
            return api.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            for child in (api, worker):
                if child.poll() is None:
                    child.terminate()
            for child in (api, worker):
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
