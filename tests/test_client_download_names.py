"""``thaw download`` against a loopback server that lists hostile file names: it refuses
each, exits 1, and writes nothing anywhere, inside -o or out of it."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from thaw.cli import main

JOB = "job_0123456789abcdef01234567"
CONTENT = b"checkpoint bytes"


class _Listing(BaseHTTPRequestHandler):
    names: list[str] = []

    def do_GET(self) -> None:
        if self.path.endswith("/checkpoints"):
            digest = hashlib.sha256(CONTENT).hexdigest()
            files = [{"name": n, "size": len(CONTENT), "sha256": digest} for n in self.names]
            entry = {"name": "epoch-1", "best": True, "last": True, "files": files}
            body = json.dumps({"data": [entry], "has_more": False}).encode()
        else:
            body = CONTENT
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listing() -> Iterator[tuple[str, type[_Listing]]]:
    handler = type("Listing", (_Listing,), {"names": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "hostile",
    [
        "../../escape.txt",
        "{abs}",
        "adapter/../../x",
        "a/b/file",
        "sub\\file",
        "..",
        ".",
        "",
        "adapter/",
        "nul\x00name",
        "C:x",
    ],
)
def test_hostile_names_are_refused_and_nothing_is_written(
    listing, tmp_path: Path, capsys, hostile: str
) -> None:
    url, handler = listing
    outside = tmp_path / "outside"
    outside.mkdir()
    name = hostile.format(abs=outside / "abs.txt")
    handler.names = ["config.json", name]  # a good name first: still nothing is written
    out = tmp_path / "deep" / "er" / "out"
    code = main(["download", JOB, "-o", str(out), "--api-url", url])
    err = capsys.readouterr().err
    assert code == 1
    assert "not a plain file name inside" in err
    assert _files(tmp_path) == ["deep", "deep/er", "deep/er/out", "outside"]


def test_a_symlink_in_the_output_folder_is_not_followed(listing, tmp_path: Path, capsys) -> None:
    url, handler = listing
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "model.safetensors.part").symlink_to(outside / "stolen")
    handler.names = ["model.safetensors"]
    assert main(["download", JOB, "-o", str(out), "--api-url", url]) == 1
    assert "refusing the listed file name 'model.safetensors'" in capsys.readouterr().err
    assert _files(outside) == []


def test_plain_names_download_inside_the_folder(listing, tmp_path: Path, capsys) -> None:
    url, handler = listing
    handler.names = ["model.safetensors", "config.json", "adapter/adapter_config.json"]
    assert main(["download", JOB, "-o", str(tmp_path / "out"), "--api-url", url]) == 0
    assert _files(tmp_path) == [
        "out",
        "out/adapter",
        "out/adapter/adapter_config.json",
        "out/config.json",
        "out/model.safetensors",
    ]
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").read_bytes() == CONTENT


def test_a_symlinked_folder_out_of_the_output_folder_is_refused(
    listing, tmp_path: Path, capsys
) -> None:
    url, handler = listing
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "adapter").symlink_to(outside, target_is_directory=True)
    handler.names = ["adapter/adapter_config.json"]
    assert main(["download", JOB, "-o", str(out), "--api-url", url]) == 1
    assert _files(outside) == []
