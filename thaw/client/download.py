"""Checkpoint file downloads that resume with ``Range`` and end verified by sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

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


class UnsafeFileName(Exception):
    """A file name the server listed that is not a plain name inside the output folder."""

    def __init__(self, name: str, out: Path):
        super().__init__(
            f"refusing the listed file name {name[:100]!r}: not a plain file name inside {out} "
            "(absolute, with a backslash, '..', a control character or more than one folder); "
            "nothing was written"
        )


FOLDERS_MAX = 1
"""A listed name may sit in one folder below -o (a lora checkpoint's ``adapter/``)."""


def _plain(part: str) -> bool:
    return (
        bool(part)
        and ".." not in part
        and part != "."
        and "\\" not in part
        and not any(ord(c) < 32 or ord(c) == 127 for c in part)
        and not PureWindowsPath(part).drive
    )


def destination(out: Path, name: str) -> Path:
    """``out / name`` when ``name`` is a relative path of plain parts, at most FOLDERS_MAX
    folders deep, that stays in ``out`` (no symlink out of it either); raises
    UnsafeFileName otherwise."""
    parts = name.split("/")
    if len(parts) > FOLDERS_MAX + 1 or not all(_plain(part) for part in parts):
        raise UnsafeFileName(name, out)
    folder = out.resolve()
    dest = out.joinpath(*parts)
    for path in (dest, dest.with_name(dest.name + PART_SUFFIX)):
        if folder not in path.resolve().parents:
            raise UnsafeFileName(name, out)
    return dest


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
