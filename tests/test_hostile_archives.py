"""Issue 8.4: tar extended headers, member depth and length, and decoded pixels are bounded
before anything is read or decoded; names in errors are truncated."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
import redis
from api_fixtures import ApiServer, problem
from support import assert_nothing_stored, png, upload, zip_of

from thaw.data import DatasetError, extract_archive
from thaw.data.inspection import check_images_decode

pytestmark = pytest.mark.in_process

MiB = 1024 * 1024


def _tar_header(name: bytes, size: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo("x")
    info.size = 0
    block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    block[0:100] = name.ljust(100, b"\0")
    block[124:136] = b"%011o\0" % size
    block[156:157] = kind
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _tar_gz_with_extended_header(kind: bytes, payload_size: int) -> bytes:
    """A gzipped tar whose first header is a ``kind`` extension of ``payload_size`` bytes,
    followed by one small image, written without holding the payload in memory."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        gz.write(_tar_header(b"././@LongLink" if kind == b"L" else b"pax", payload_size, kind))
        chunk = b"a" * MiB
        left = payload_size
        while left > 0:
            gz.write(chunk[: min(left, MiB)])
            left -= MiB
        gz.write(b"\0" * (-payload_size % 512))
        image = png()
        gz.write(_tar_header(b"cats/1.png", len(image), b"0"))
        gz.write(image + b"\0" * (-len(image) % 512) + b"\0" * 1024)
    return out.getvalue()


@pytest.mark.parametrize(("kind", "size"), [(b"x", 400 * MiB), (b"L", 200 * MiB)])
def test_huge_extended_headers_are_refused_before_they_are_read(
    tmp_path: Path, kind: bytes, size: int
) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz_with_extended_header(kind, size))
    assert archive.stat().st_size < 2 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as info:
            extract_archive(
                archive, tmp_path / "out", max_members=100, max_uncompressed_bytes=10**12
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "archive_header_too_large"
    assert info.value.message == (
        f"the archive has a {size}-byte extended (PAX or GNU long-name) header; at most 65536 "
        "bytes are allowed; re-create it with plain names of at most 1024 characters"
    )
    assert peak < 8 * MiB
    assert not (tmp_path / "out").exists()


def test_upload_with_a_huge_pax_header_is_a_422(api: ApiServer, store: redis.Redis) -> None:
    body = _tar_gz_with_extended_header(b"x", 100 * MiB)
    with api.client() as http:
        err = problem(upload(http, "pax.tar.gz", body), 422)
    assert err["code"] == "archive_header_too_large"
    assert_nothing_stored(api, store)


def test_long_member_names_are_refused_and_truncated_in_the_error(
    api: ApiServer, store: redis.Redis
) -> None:
    name = "cats/" + "n" * 5000 + ".png"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        image = png()
        info.size = len(image)
        tf.addfile(info, io.BytesIO(image))
    with api.client() as http:
        response = upload(http, "long.tar.gz", buf.getvalue())
    err = problem(response, 422)
    assert err["code"] == "archive_unsafe_path"
    assert "is 5009 characters long; at most 1024" in err["detail"]
    assert "...(5009 characters)" in err["member"]
    assert len(response.content) < 2000
    assert_nothing_stored(api, store)


def test_a_member_2000_folders_deep_is_a_422(api: ApiServer, store: redis.Redis) -> None:
    deep = "/".join(["d"] * 2000) + "/x.png"
    with api.client() as http:
        err = problem(upload(http, "deep.zip", zip_of({deep: png(), "cats/1.png": png()})), 422)
    assert err["code"] == "archive_unsafe_path"
    assert "is 4005 characters long; at most 1024" in err["detail"]
    deeper = "/".join(["d"] * 40) + "/x.png"
    with api.client() as http:
        err = problem(upload(http, "deep.zip", zip_of({deeper: png(), "cats/1.png": png()})), 422)
    assert "is 40 folders deep; at most 32" in err["detail"]
    assert_nothing_stored(api, store)


def test_depth_counts_folders_not_the_file_name(tmp_path: Path) -> None:
    at_limit = tmp_path / "at_limit.zip"
    at_limit.write_bytes(zip_of({"/".join(["d"] * 3) + "/x.png": png()}))
    out = extract_archive(
        at_limit, tmp_path / "ok", max_members=10, max_uncompressed_bytes=MiB, max_depth=3
    )
    assert [p.name for p in out.rglob("*.png")] == ["x.png"]
    past = tmp_path / "past.zip"
    past.write_bytes(zip_of({"/".join(["d"] * 4) + "/x.png": png()}))
    with pytest.raises(DatasetError) as info:
        extract_archive(
            past, tmp_path / "no", max_members=10, max_uncompressed_bytes=MiB, max_depth=3
        )
    assert "is 4 folders deep; at most 3" in info.value.message


def _big_png(width: int, height: int) -> bytes:
    """A valid RGBA PNG of zeros, compressed in chunks (never the whole raster in memory)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    z = zlib.compressobj(9)
    row = b"\0" * (1 + width * 4)
    idat = bytearray()
    for _ in range(height):
        idat += z.compress(row)
    idat += z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", bytes(idat))
        + chunk(b"IEND", b"")
    )


def test_image_over_the_pixel_bound_is_refused_from_its_header(
    api: ApiServer, store: redis.Redis
) -> None:
    big = _big_png(13000, 13000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("cats/big.png", big)
        zf.writestr("dogs/1.png", png())
    assert len(buf.getvalue()) < 10_000
    with api.client() as http:
        err = problem(upload(http, "bomb.zip", buf.getvalue()), 422)
    assert err["code"] == "image_too_large"
    assert err["detail"] == (
        "image 'cats/big.png' is 13000x13000 (169000000 pixels); at most 40000000 "
        "(THAW_MAX_IMAGE_PIXELS); downscale it"
    )
    assert_nothing_stored(api, store)


def test_pixels_per_dataset_are_bounded(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png())  # 8x8 each
    rels = [f"{i}.png" for i in range(3)]
    check_images_decode(tmp_path, rels, max_image_pixels=64, max_dataset_pixels=192)
    with pytest.raises(DatasetError) as info:
        check_images_decode(tmp_path, rels, max_image_pixels=64, max_dataset_pixels=191)
    assert info.value.code == "images_too_large"
    assert info.value.message == (
        "the images hold 192 pixels in all; at most 191 (THAW_MAX_DATASET_PIXELS); "
        "downscale them or upload fewer"
    )
    with pytest.raises(DatasetError) as info:
        check_images_decode(tmp_path, rels, max_image_pixels=63, max_dataset_pixels=10**9)
    assert info.value.code == "image_too_large"


def test_many_extended_headers_are_counted_against_the_configured_member_limit(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "a.tar.gz"
    with gzip.GzipFile(archive, mode="wb") as gz:
        for i in range(150):
            gz.write(_tar_header(b"pax", 512, b"x") + (b"%d" % i).ljust(512, b"\0"))
        gz.write(b"\0" * 1024)
    with pytest.raises(DatasetError) as info:
        extract_archive(archive, tmp_path / "out", max_members=100, max_uncompressed_bytes=10**9)
    assert info.value.code == "archive_too_many_members"
    assert info.value.message.startswith(
        "the archive has more than 100 extended (PAX or GNU long-name) headers; at most 100"
    )


def test_errors_name_the_file_the_user_uploaded(api: ApiServer, store: redis.Redis) -> None:
    with api.client() as http:
        err = problem(upload(http, "holiday photos.tar.gz", b"not an archive at all" * 30), 422)
        assert err["detail"].startswith("'holiday photos.tar.gz' is not a .zip or .tar.gz")
        err = problem(upload(http, "reviews.csv", b"text,label\n,pos\nok,neg\n"), 422)
        assert err["detail"].startswith("'reviews.csv' has 1 bad row(s)")
    assert_nothing_stored(api, store)
