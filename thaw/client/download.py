"""Checkpoint file downloads that resume with ``Range`` and end verified by sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from thaw.client.errors import raise_for_problem

_CHUNK = 1024 * 1024
PART_SUFFIX = ".part"


class ChecksumMismatch(Exception):
    def __init__(self, path: Path, expected: str, actual: str):
        self.path = path
        super().__init__(
            f"{path.name}: sha256 {actual} does not match the server's {expected}; "
            "the download was removed, run the command again"
        )


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int
    sha256: str
    resumed_from: int
    fetched: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    http: httpx.Client, url: str, dest: Path, *, size: int, sha256: str
) -> DownloadedFile:
    """Fetch ``url`` into ``dest`` through ``dest.part``, continuing a partial ``.part`` with a
    Range request (If-Range on the sha256 ETag, so a changed file starts over). A resumed file
    that fails the checksum is fetched once more from the start."""
    if dest.exists() and dest.stat().st_size == size and sha256_of(dest) == sha256:
        return DownloadedFile(dest, size, sha256, resumed_from=size, fetched=0)
    part = dest.with_name(dest.name + PART_SUFFIX)
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    resumed_from, fetched = _fetch(http, url, part, offset, sha256)
    actual = sha256_of(part)
    if actual != sha256 and resumed_from > 0:
        part.unlink()
        resumed_from, more = _fetch(http, url, part, 0, sha256)
        fetched += more
        actual = sha256_of(part)
    if actual != sha256:
        part.unlink()
        raise ChecksumMismatch(dest, sha256, actual)
    part.replace(dest)
    return DownloadedFile(dest, size, sha256, resumed_from=resumed_from, fetched=fetched)


def _fetch(http: httpx.Client, url: str, part: Path, offset: int, sha256: str) -> tuple[int, int]:
    """Append the rest of the file to ``part``; returns (where it started, bytes fetched)."""
    headers = {"Range": f"bytes={offset}-", "If-Range": f'"{sha256}"'} if offset else {}
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 416:
            response.read()
            part.unlink(missing_ok=True)
            return _fetch(http, url, part, 0, sha256)
        raise_for_problem(response)
        start = offset if response.status_code == 206 else 0
        fetched = 0
        with part.open("r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            for chunk in response.iter_bytes(_CHUNK):
                f.write(chunk)
                fetched += len(chunk)
    return start, fetched
