"""Safe extraction of uploaded .zip and .tar.gz archives.

Every member is checked before anything is written; a refusal, or any failure while
writing, leaves the destination as it was found (empty or absent).
"""

from __future__ import annotations

import errno
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
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError)


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
) -> Path:
    """Extract a .zip or tar (.tar.gz/.tgz) archive into ``dest_dir`` and return it.

    ``dest_dir`` must be absent or empty. Junk (``__MACOSX/``, dotfiles) is skipped, and a
    single top-level folder that wraps the class folders is unwrapped so ``dest_dir`` is the
    dataset root. Raises DatasetError for unsafe or oversized archives.
    """
    archive = Path(archive_path)
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"extraction target {dest} must be absent or an empty directory")
    created = not dest.exists()
    try:
        with _open_members(archive, max_members, max_uncompressed_bytes) as members:
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
def _open_members(archive: Path, max_members: int, max_bytes: int) -> Iterator[list[_Member]]:
    """Open an archive and list its checked members, closing it afterwards."""
    with open(archive, "rb") as f:
        head = f.read(4)
    if head in _ZIP_MAGIC:
        with zipfile.ZipFile(archive) as zf:
            yield list(_zip_members(zf, max_members, max_bytes))
        return
    if not tarfile.is_tarfile(archive):
        raise DatasetError(
            f"'{archive.name}' is not a .zip or .tar.gz archive; "
            "upload a zip or gzipped tar of the image folder",
            code="bad_format",
        )
    with tarfile.open(archive, mode="r:*") as tf:
        yield list(_tar_members(tf, max_members, max_bytes))


def _zip_members(zf: zipfile.ZipFile, max_members: int, max_bytes: int) -> Iterator[_Member]:
    infos = zf.infolist()
    _check_count(len(infos), max_members)
    total = 0
    for info in infos:
        parts = _safe_parts(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise _link_error(info.filename)
        if kind not in _ALLOWED_ZIP_TYPES:
            raise _special_error(info.filename)
        if info.flag_bits & 0x1:
            raise DatasetError(
                f"archive member '{info.filename}' is encrypted; upload an archive "
                "without a password",
                code="bad_format",
            )
        total += info.file_size
        _check_size(total, max_bytes)
        if parts:
            yield _Member(
                info.filename, parts, info.is_dir(), info.file_size, _zip_opener(zf, info)
            )


def _tar_members(tf: tarfile.TarFile, max_members: int, max_bytes: int) -> Iterator[_Member]:
    total = 0
    for count, info in enumerate(tf, start=1):
        _check_count(count, max_members)
        parts = _safe_parts(info.name)
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


def _safe_parts(name: str) -> tuple[str, ...]:
    """Path components of a member name, refusing anything that could escape the target."""
    normalized = name.replace("\\", "/")
    if "\x00" in name:
        raise _unsafe(name, "contains a NUL byte")
    if normalized.startswith("/") or _DRIVE.match(normalized):
        raise _unsafe(name, "is an absolute path")
    parts = tuple(p for p in normalized.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _unsafe(name, "contains a '..' component")
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
                f"archive member '{m.name}' appears twice; keep one copy and re-create the archive",
                code="archive_duplicate_member",
            )
        else:
            files.add(m.parts)
        dirs.update(m.parts[:i] for i in range(1, len(m.parts)))
    clash = files & dirs
    if clash:
        name = "/".join(sorted(clash)[0])
        raise DatasetError(
            f"archive member '{name}' is both a file and a folder; rename one of them",
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
                f"archive member '{m.name}' has a name too long for the file system; shorten it",
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


def _unsafe(name: str, why: str) -> DatasetError:
    return DatasetError(
        f"archive member '{name}' {why}; archives may only hold relative paths inside "
        "the dataset folder",
        code="archive_unsafe_path",
        path=name,
    )


def _link_error(name: str) -> DatasetError:
    return DatasetError(
        f"archive member '{name}' is a link; replace links with the files themselves",
        code="archive_link",
        path=name,
    )


def _special_error(name: str) -> DatasetError:
    return DatasetError(
        f"archive member '{name}' is not a regular file or folder (device or pipe); remove it",
        code="archive_special_file",
        path=name,
    )
