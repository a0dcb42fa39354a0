"""Safe extraction of uploaded .zip and .tar.gz archives.

Every member is checked before anything is written; a refusal, or any failure while
writing, leaves the destination as it was found (empty or absent).
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from thaw.data.errors import DatasetError
from thaw.data.junk import is_junk_name, is_junk_path

_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_ALLOWED_ZIP_TYPES = (0, stat.S_IFREG, stat.S_IFDIR)
_CORRUPT = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    lzma.LZMAError,
    gzip.BadGzipFile,
)
_BLOCK = 512
_EXTENDED_HEADERS = frozenset(b"xgLK")  # PAX, PAX global, GNU long name, GNU long link
_SHOWN_NAME = 120
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_NAME_CHARS = 1024


@dataclass(frozen=True)
class _Limits:
    members: int
    uncompressed_bytes: int
    header_bytes: int
    depth: int
    name_chars: int


@dataclass(frozen=True)
class _Member:
    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    open: Callable[[], AbstractContextManager[IO[bytes]]]


def extract_archive(
    archive_path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    max_members: int,
    max_uncompressed_bytes: int,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_name_chars: int = DEFAULT_MAX_NAME_CHARS,
    shown_as: str | None = None,
) -> Path:
    """Extract a .zip or tar (.tar.gz/.tgz) archive into ``dest_dir`` and return it.

    ``dest_dir`` must be absent or empty. Junk (``__MACOSX/``, dotfiles) is skipped, and a
    single top-level folder that wraps the class folders is unwrapped so ``dest_dir`` is the
    dataset root. Raises DatasetError for unsafe or oversized archives; a tar's raw headers
    are checked against the limits before ``tarfile`` reads any of them. Errors call the
    archive ``shown_as`` (the name the user gave it), or else by its file name.
    """
    limits = _Limits(
        max_members, max_uncompressed_bytes, max_header_bytes, max_depth, max_name_chars
    )
    archive = Path(archive_path)
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"extraction target {dest} must be absent or an empty directory")
    created = not dest.exists()
    try:
        with _open_members(archive, limits, shown_as or archive.name) as members:
            _check_layout(members)
            dest.mkdir(parents=True, exist_ok=True)
            _write_members(members, dest, max_uncompressed_bytes)
        _unwrap_single_folder(dest)
    except BaseException as exc:
        _clear(dest, created)
        if isinstance(exc, _CORRUPT):
            raise DatasetError(
                f"the archive is corrupt or truncated ({exc}); re-create it and upload again",
                code="bad_format",
            ) from exc
        raise
    return dest


@contextmanager
def _open_members(archive: Path, limits: _Limits, shown_as: str) -> Iterator[list[_Member]]:
    """Open an archive and list its checked members, closing it afterwards."""
    with open(archive, "rb") as f:
        head = f.read(4)
    if head in _ZIP_MAGIC:
        with zipfile.ZipFile(archive) as zf:
            yield list(_zip_members(zf, limits))
        return
    _scan_tar_headers(archive, limits, shown_as)
    with tarfile.open(archive, mode="r:*") as tf:
        yield list(_tar_members(tf, limits))


def _decompressed(archive: Path) -> IO[bytes]:
    with open(archive, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if head.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _scan_tar_headers(archive: Path, limits: _Limits, shown_as: str) -> None:
    """Walk the raw tar headers, skipping data, so that PAX and GNU extended headers count
    against the member and size limits and none over ``header_bytes`` is ever read."""
    headers = extended = 0
    total = 0
    with _decompressed(archive) as raw:
        while True:
            header = raw.read(_BLOCK)
            if headers and (len(header) < _BLOCK or header == bytes(_BLOCK)):
                return
            if not _valid_header(header):
                if headers:
                    raise tarfile.ReadError("bad tar header checksum")
                raise DatasetError(
                    f"'{shown_name(shown_as)}' is not a .zip or .tar.gz archive; "
                    "upload a zip or gzipped tar of the image folder",
                    code="bad_format",
                )
            headers += 1
            try:
                size = tarfile.nti(header[124:136])
            except tarfile.InvalidHeaderError as exc:
                raise tarfile.ReadError(f"bad tar header: {exc}") from exc
            if size < 0:
                raise tarfile.ReadError("bad tar header: negative size")
            if header[156] in _EXTENDED_HEADERS:
                extended += 1
                _check_extended(extended, size, limits)
            else:
                _check_count(headers - extended, limits.members)
            total += size
            _check_size(total, limits.uncompressed_bytes)
            _skip(raw, -(-size // _BLOCK) * _BLOCK)


def _check_extended(count: int, size: int, limits: _Limits) -> None:
    """At most one extended header per allowed member, none over ``header_bytes``."""
    if count > limits.members:
        raise DatasetError(
            f"the archive has more than {limits.members} extended (PAX or GNU long-name) "
            f"headers; at most {limits.members} are allowed, one per member; re-create it "
            "with plain names",
            code="archive_too_many_members",
        )
    if size > limits.header_bytes:
        raise DatasetError(
            f"the archive has a {size}-byte extended (PAX or GNU long-name) header; at "
            f"most {limits.header_bytes} bytes are allowed; re-create it with plain "
            f"names of at most {limits.name_chars} characters",
            code="archive_header_too_large",
        )


def _valid_header(header: bytes) -> bool:
    if len(header) < _BLOCK:
        return False
    try:
        return tarfile.nti(header[148:156]) in tarfile.calc_chksums(header)
    except tarfile.InvalidHeaderError:
        return False


def _skip(raw: IO[bytes], count: int) -> None:
    while count > 0:
        chunk = raw.read(min(count, _CHUNK))
        if not chunk:
            return
        count -= len(chunk)


def _zip_members(zf: zipfile.ZipFile, limits: _Limits) -> Iterator[_Member]:
    infos = zf.infolist()
    _check_count(len(infos), limits.members)
    max_bytes = limits.uncompressed_bytes
    total = 0
    for info in infos:
        parts = _safe_parts(info.filename, limits, info.is_dir())
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise _link_error(info.filename)
        if kind not in _ALLOWED_ZIP_TYPES:
            raise _special_error(info.filename)
        if info.flag_bits & 0x1:
            raise DatasetError(
                f"archive member '{shown_name(info.filename)}' is encrypted; upload an archive "
                "without a password",
                code="bad_format",
            )
        total += info.file_size
        _check_size(total, max_bytes)
        if parts:
            yield _Member(
                info.filename, parts, info.is_dir(), info.file_size, _zip_opener(zf, info)
            )


def _tar_members(tf: tarfile.TarFile, limits: _Limits) -> Iterator[_Member]:
    max_bytes = limits.uncompressed_bytes
    total = 0
    for count, info in enumerate(tf, start=1):
        _check_count(count, limits.members)
        parts = _safe_parts(info.name, limits, info.isdir())
        if info.issym() or info.islnk():
            raise _link_error(info.name)
        if not (info.isfile() or info.isdir()):
            raise _special_error(info.name)
        total += info.size
        _check_size(total, max_bytes)
        if parts:
            yield _Member(info.name, parts, info.isdir(), info.size, _tar_opener(tf, info))


def _zip_opener(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo
) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    return lambda: zf.open(info)


def _tar_opener(
    tf: tarfile.TarFile, info: tarfile.TarInfo
) -> Callable[[], AbstractContextManager[IO[bytes]]]:
    def opener() -> AbstractContextManager[IO[bytes]]:
        handle = tf.extractfile(info)
        if handle is None:
            raise _special_error(info.name)
        return handle

    return opener


def _safe_parts(name: str, limits: _Limits, is_dir: bool) -> tuple[str, ...]:
    """Path components of a member name, refusing anything that could escape the target,
    or that is longer or deeper than the limits."""
    if len(name) > limits.name_chars:
        raise _unsafe(name, f"is {len(name)} characters long; at most {limits.name_chars}")
    normalized = name.replace("\\", "/")
    if "\x00" in name:
        raise _unsafe(name, "contains a NUL byte")
    if normalized.startswith("/") or _DRIVE.match(normalized):
        raise _unsafe(name, "is an absolute path")
    parts = tuple(p for p in normalized.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _unsafe(name, "contains a '..' component")
    folders = len(parts) if is_dir else len(parts) - 1
    if folders > limits.depth:
        raise _unsafe(name, f"is {folders} folders deep; at most {limits.depth}")
    return parts


def _check_layout(members: list[_Member]) -> None:
    """Refuse duplicate members and files that collide with folders."""
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    for m in members:
        if is_junk_path(m.parts):
            continue
        if m.is_dir:
            dirs.add(m.parts)
        elif m.parts in files:
            raise DatasetError(
                f"archive member '{shown_name(m.name)}' appears twice; keep one copy and "
                "re-create the archive",
                code="archive_duplicate_member",
            )
        else:
            files.add(m.parts)
        dirs.update(m.parts[:i] for i in range(1, len(m.parts)))
    clash = files & dirs
    if clash:
        name = "/".join(sorted(clash)[0])
        raise DatasetError(
            f"archive member '{shown_name(name)}' is both a file and a folder; rename one of them",
            code="archive_duplicate_member",
        )


def _write_members(members: list[_Member], dest: Path, max_bytes: int) -> None:
    written = 0
    for m in members:
        if is_junk_path(m.parts):
            continue
        target = dest.joinpath(*m.parts)
        try:
            if m.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with m.open() as src, open(target, "xb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    _check_size(written, max_bytes)
                    out.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise DatasetError(
                f"archive member '{shown_name(m.name)}' has a name too long for the file "
                "system; shorten it",
                code="bad_format",
            ) from exc


def _unwrap_single_folder(dest: Path) -> None:
    entries = [e for e in dest.iterdir() if not is_junk_name(e.name)]
    if len(entries) != 1 or not entries[0].is_dir():
        return
    if not any(child.is_dir() for child in entries[0].iterdir()):
        return
    staging = dest / f".unwrap-{uuid.uuid4().hex}"
    entries[0].rename(staging)
    for child in staging.iterdir():
        child.rename(dest / child.name)
    staging.rmdir()


def _clear(dest: Path, created: bool) -> None:
    if not dest.exists():
        return
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise DatasetError(
            f"the archive has more than {limit} members; split the dataset or pack fewer files",
            code="archive_too_many_members",
        )


def _check_size(total: int, limit: int) -> None:
    if total > limit:
        raise DatasetError(
            f"the archive unpacks to more than {limit} bytes; upload a smaller dataset",
            code="archive_too_large",
        )


def shown_name(name: str) -> str:
    """A member name as errors show it: at most ``_SHOWN_NAME`` characters, no NUL."""
    clean = name.replace("\x00", "\\0")
    if len(clean) <= _SHOWN_NAME:
        return clean
    return f"{clean[: _SHOWN_NAME - 20]}...({len(name)} characters)"


def _unsafe(name: str, why: str) -> DatasetError:
    return DatasetError(
        f"archive member '{shown_name(name)}' {why}; archives may only hold relative paths "
        "inside the dataset folder",
        code="archive_unsafe_path",
        path=shown_name(name),
    )


def _link_error(name: str) -> DatasetError:
    return DatasetError(
        f"archive member '{shown_name(name)}' is a link; replace links with the files themselves",
        code="archive_link",
        path=shown_name(name),
    )


def _special_error(name: str) -> DatasetError:
    return DatasetError(
        f"archive member '{shown_name(name)}' is not a regular file or folder (device or "
        "pipe); remove it",
        code="archive_special_file",
        path=shown_name(name),
    )
