"""Datasets within bounds: classes, list summaries, paged classes, bytes counted as stored."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import httpx
import pytest
import redis
from api_fixtures import ApiServer, problem

from thaw.data.errors import DatasetError
from thaw.data.inspection import inspect_image_folder
from thaw.data.rows import read_text_rows
from thaw.errors import SpecError
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.store import DatasetStore
from thaw.submit import resolve_spec
from thaw.uploads import DatasetQuotaExceeded, UploadSpool, store_upload

pytestmark = pytest.mark.in_process

PADDING = 1_000_000


def labels_csv(distinct: int, rows: int | None = None) -> bytes:
    lines = [f"t{i},l{i % distinct}\n" for i in range(rows or distinct)]
    return ("text,label\n" + "".join(lines)).encode()


def png(extra_chunk: bytes = b"") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buf, format="PNG")
    data = buf.getvalue()
    if not extra_chunk:
        return data
    chunk = struct.pack(">I", len(extra_chunk)) + b"prIv" + extra_chunk
    chunk += struct.pack(">I", zlib.crc32(b"prIv" + extra_chunk))
    return data[:33] + chunk + data[33:]  # after the 8-byte signature and IHDR


def padded_zip() -> bytes:
    """Two classes; one image with 1 MB of zeros after IEND, one with them in a private chunk
    (both decode): a tiny upload that is large once stored."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/1.png", png() + bytes(PADDING))
        zf.writestr("a/2.png", png())
        zf.writestr("b/1.png", png(bytes(PADDING)))
        zf.writestr("b/2.png", png())
    return buf.getvalue()


def test_a_csv_past_the_class_bound_is_refused_at_the_first_label_too_many(
    tmp_path: Path,
) -> None:
    """The 400,000-label CSV: refused where label 10,001 appears, the rest never read."""
    path = tmp_path / "labels.csv"
    path.write_bytes(labels_csv(400_000))
    with pytest.raises(DatasetError) as caught:
        read_text_rows(path, "csv")
    err = caught.value
    assert err.code == "too_many_classes" and err.lines == (10_002,)
    assert "at most 10000 classes (THAW_MAX_CLASSES)" in str(err)
    assert len(read_text_rows(path, "csv", max_classes=400_000).labels) == 400_000


def test_an_image_folder_past_the_class_bound_is_refused(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.png").write_bytes(png())
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(tmp_path, max_classes=2)
    assert caught.value.code == "too_many_classes"
    assert "3 class folders; at most 2 classes" in str(caught.value)


def test_a_spec_dataset_past_the_class_bound_is_refused() -> None:
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 50, "num_examples": 100}},
        }
    )
    with pytest.raises(SpecError) as caught:
        resolve_spec(spec, Settings(max_classes=20))
    assert caught.value.loc == ("dataset",)
    assert "50 classes; at most 20 (THAW_MAX_CLASSES)" in caught.value.message


def test_list_is_a_summary_and_classes_page_on_the_dataset(http: httpx.Client) -> None:
    too_many = http.post("/v1/datasets", files={"file": ("l.csv", labels_csv(10_001))})
    err = problem(too_many, 422)
    assert err["code"] == "too_many_classes" and "THAW_MAX_CLASSES" in err["detail"]
    ds = http.post("/v1/datasets", files={"file": ("l.csv", labels_csv(3_000, 6_000))}).json()
    listed = http.get("/v1/datasets").json()["data"]
    assert [(d["id"], d["num_classes"]) for d in listed] == [(ds["id"], 3_000)]
    assert "classes" not in listed[0] and "class_counts" not in listed[0]
    full = http.get(f"/v1/datasets/{ds['id']}").json()
    assert len(full["classes"]) == 3_000 and full["class_counts"]["l7"] == 2
    first = http.get(f"/v1/datasets/{ds['id']}/classes", params={"limit": 2}).json()
    assert first == {
        "data": [{"name": "l0", "count": 2}, {"name": "l1", "count": 2}],
        "has_more": True,
    }
    after = full["classes"][-2]
    last = http.get(f"/v1/datasets/{ds['id']}/classes", params={"after": after}).json()
    assert last == {"data": [{"name": full["classes"][-1], "count": 2}], "has_more": False}
    bad = problem(http.get(f"/v1/datasets/{ds['id']}/classes", params={"after": "nope"}), 422)
    assert bad["code"] == "invalid_cursor"


def test_size_counts_the_bytes_stored_padding_in_images_included(
    api: ApiServer, http: httpx.Client
) -> None:
    body = padded_zip()
    assert len(body) < 20_000
    ds = http.post("/v1/datasets", files={"file": ("padded.zip", body)})
    assert ds.status_code == 201, ds.text
    assert ds.json()["upload_bytes"] == len(body)
    assert ds.json()["size_bytes"] > 2 * PADDING
    stored = api.uploads_dir / ds.json()["id"]
    assert ds.json()["size_bytes"] == sum(f.stat().st_size for f in stored.rglob("*.png"))


def test_the_byte_quota_refuses_what_would_be_stored(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    settings = Settings(data_dir=tmp_path, max_dataset_bytes_per_tenant=PADDING)
    datasets = DatasetStore(redis_client)
    small = UploadSpool(settings)
    small.write(labels_csv(2, 4))
    kept = store_upload(
        small, filename="s.csv", name=None, tenant="t", settings=settings, datasets=datasets
    )
    assert datasets.usage("t", 10) == (1, kept.size_bytes)
    spool = UploadSpool(settings)
    spool.write(padded_zip())
    with pytest.raises(DatasetQuotaExceeded) as caught:
        store_upload(
            spool, filename="p.zip", name=None, tenant="t", settings=settings, datasets=datasets
        )
    stored = caught.value.message.split("this upload of ")[1].split(" bytes")[0]
    assert int(stored) > 2 * PADDING and caught.value.status == 429
    assert [d.id for d in datasets.list("t")[0]] == [kept.id]
    assert sorted(p.name for p in settings.uploads_dir.iterdir()) == [".incoming", kept.id]
    assert list((settings.uploads_dir / ".incoming").iterdir()) == []
