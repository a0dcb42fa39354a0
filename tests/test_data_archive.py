"""Safe extraction of uploaded archives: every refusal leaves nothing behind."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from thaw.data import DatasetError, extract_archive

LIMITS = {"max_members": 100, "max_uncompressed_bytes": 1_000_000}


def make_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def tar_file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def refusal(archive: Path, dest: Path, **limits: int) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        extract_archive(archive, dest, **{**LIMITS, **limits})
    return caught.value


def only_archive_left(tmp_path: Path, archive: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


@pytest.mark.parametrize(
    "name",
    [
        "../evil.png",
        "cats/../../evil.png",
        "/etc/evil.png",
        "C:/evil.png",
        "C:\\evil.png",
        "\\evil.png",
        "cats\\..\\..\\evil.png",
    ],
)
def test_zip_unsafe_paths_are_refused(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "up.zip", [("cats/a.png", b"x"), (name, b"evil")])
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist()[1] == name
    err = refusal(archive, tmp_path / "out")
    assert err.code == "archive_unsafe_path"
    assert err.path == name
    assert f"'{name}'" in err.message
    only_archive_left(tmp_path, archive)


@pytest.mark.parametrize("name", ["../evil.png", "/tmp/evil.png", "a/../../evil.png"])
def test_tar_unsafe_paths_are_refused(tmp_path: Path, name: str) -> None:
    archive = make_tar(tmp_path / "up.tar.gz", [tar_file("cats/a.png", b"x"), tar_file(name, b"e")])
    err = refusal(archive, tmp_path / "out")
    assert err.code == "archive_unsafe_path"
    assert err.path == name
    only_archive_left(tmp_path, archive)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("cats/link.png")
    link.type = kind
    link.linkname = "/etc/passwd"
    archive = make_tar(tmp_path / "up.tgz", [tar_file("cats/a.png", b"x"), (link, None)])
    err = refusal(archive, tmp_path / "out")
    assert err.code == "archive_link"
    assert err.path == "cats/link.png"
    only_archive_left(tmp_path, archive)


def test_tar_device_is_refused(tmp_path: Path) -> None:
    dev = tarfile.TarInfo("cats/dev")
    dev.type = tarfile.CHRTYPE
    archive = make_tar(tmp_path / "up.tgz", [(dev, None)])
    err = refusal(archive, tmp_path / "out")
    assert err.code == "archive_special_file"
    only_archive_left(tmp_path, archive)


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "up.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cats/a.png", b"x")
        link = zipfile.ZipInfo("cats/link.png")
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    err = refusal(archive, tmp_path / "out")
    assert err.code == "archive_link"
    assert err.path == "cats/link.png"
    only_archive_left(tmp_path, archive)


def test_too_many_members_is_refused(tmp_path: Path) -> None:
    members = [(f"c{i % 2}/{i}.png", b"x") for i in range(4)]
    zipped = make_zip(tmp_path / "up.zip", members)
    tarred = make_tar(tmp_path / "up.tgz", [tar_file(n, d) for n, d in members])
    assert refusal(zipped, tmp_path / "a", max_members=3).code == "archive_too_many_members"
    assert refusal(tarred, tmp_path / "b", max_members=3).code == "archive_too_many_members"
    extract_archive(zipped, tmp_path / "c", max_members=4, max_uncompressed_bytes=4)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["c0", "c1"]


def test_too_large_uncompressed_is_refused(tmp_path: Path) -> None:
    members = [("c0/a.png", b"\0" * 600), ("c1/b.png", b"\0" * 600)]
    zipped = make_zip(tmp_path / "up.zip", members)
    tarred = make_tar(tmp_path / "up.tgz", [tar_file(n, d) for n, d in members])
    err = refusal(zipped, tmp_path / "a", max_uncompressed_bytes=1199)
    assert err.code == "archive_too_large"
    assert "1199 bytes" in err.message
    assert refusal(tarred, tmp_path / "b", max_uncompressed_bytes=1199).code == "archive_too_large"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.tgz", "up.zip"]


def test_zip_with_understated_sizes_is_refused_and_cleaned_up(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", [("c0/a.png", b"ok"), ("c1/b.png", b"\0" * 100_000)])
    data = bytearray(archive.read_bytes())
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature, data.find(signature) + 1)
        struct.pack_into("<I", data, at + size_at, 10)
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert [i.file_size for i in zf.infolist()] == [2, 10]
    dest = tmp_path / "out"
    dest.mkdir()
    err = refusal(archive, dest, max_uncompressed_bytes=1000)
    assert err.code == "bad_format"
    assert "Bad CRC-32 for file 'c1/b.png'" in err.message
    assert list(dest.iterdir()) == []


def test_corrupt_member_after_written_ones_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "up.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("c0/a.png", b"first member")
        zf.writestr("c1/b.png", b"second member")
    data = archive.read_bytes().replace(b"second member", b"SECOND member")
    archive.write_bytes(data)
    err = refusal(archive, tmp_path / "out")
    assert err.code == "bad_format"
    only_archive_left(tmp_path, archive)


def test_duplicate_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "up.zip"
    with zipfile.ZipFile(archive, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("c0/a.png", b"1")
        zf.writestr("c0/a.png", b"2")
    err = refusal(archive, tmp_path / "out")
    assert err.code == "archive_duplicate_member"
    only_archive_left(tmp_path, archive)


def test_not_an_archive_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "up.zip"
    archive.write_bytes(b"just some text, not an archive")
    err = refusal(archive, tmp_path / "out")
    assert err.code == "bad_format"
    assert "'up.zip' is not a .zip or .tar.gz archive" in err.message
    only_archive_left(tmp_path, archive)


def test_single_top_folder_is_unwrapped_and_junk_skipped(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "up.zip",
        [
            ("digits/", b""),
            ("digits/0/a.png", b"a"),
            ("digits/1/b.png", b"bb"),
            ("digits/1/nested/c.png", b"ccc"),
            ("digits/.DS_Store", b"junk"),
            ("digits/1/._b.png", b"junk"),
            ("__MACOSX/digits/0/._a.png", b"junk"),
        ],
    )
    dest = extract_archive(archive, tmp_path / "out", **LIMITS)
    assert dest == tmp_path / "out"
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["0/a.png", "1/b.png", "1/nested/c.png"]
    assert (dest / "1" / "nested" / "c.png").read_bytes() == b"ccc"


def test_tar_gz_wrapper_named_like_a_child_is_unwrapped(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "up.tar.gz",
        [tar_file("data/data/x.png", b"1"), tar_file("data/other/y.png", b"22")],
    )
    dest = extract_archive(archive, tmp_path / "out", **LIMITS)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["data/x.png", "other/y.png"]


def test_single_folder_of_files_is_kept(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "up.zip", [("cats/a.png", b"a"), ("cats/b.png", b"b")])
    dest = extract_archive(archive, tmp_path / "out", **LIMITS)
    assert [p.name for p in dest.iterdir()] == ["cats"]


def test_non_empty_destination_is_a_caller_error(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "up.zip", [("c0/a.png", b"a")])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="must be absent or an empty directory"):
        extract_archive(archive, dest, **LIMITS)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
