"""POST/GET/DELETE /v1/datasets: streamed uploads, every refusal leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest
import redis
from api_fixtures import (
    MAX_ARCHIVE_MEMBERS,
    MAX_UPLOAD_BYTES,
    ApiServer,
    job_body,
    problem,
)
from digits import digit_counts, write_digits_folder, zip_folder
from support import assert_nothing_stored, png, upload, zip_of

pytestmark = pytest.mark.in_process

PER_CLASS = 3


@pytest.fixture(scope="module")
def digits_zip(module_tmp_path: Path) -> bytes:
    root = module_tmp_path
    folder = write_digits_folder(root / "digits", per_class=PER_CLASS)
    return zip_folder(folder, root / "digits.zip", top="digits").read_bytes()


def two_class_zip(**extra: bytes) -> bytes:
    return zip_of({"a/1.png": png(), "a/2.png": png(), "b/1.png": png(), "b/2.png": png(), **extra})


def test_upload_digits_zip(
    api: ApiServer, http: httpx.Client, digits_zip: bytes, store: redis.Redis
) -> None:
    response = upload(http, "digits.zip", digits_zip)
    assert response.status_code == 201, response.text
    ds = response.json()
    assert set(ds) == {
        "id", "name", "format", "num_examples", "classes", "class_counts", "size_bytes",
        "upload_bytes", "sha256", "created_at",
    }  # fmt: skip
    assert ds["name"] == "digits"
    assert ds["format"] == "image_folder"
    assert ds["classes"] == [str(d) for d in range(10)]
    assert ds["class_counts"] == digit_counts(PER_CLASS)
    assert ds["num_examples"] == 10 * PER_CLASS
    assert ds["upload_bytes"] == len(digits_zip)
    stored = api.uploads_dir / ds["id"] / "data"
    assert ds["size_bytes"] == sum(f.stat().st_size for f in stored.rglob("*") if f.is_file())
    assert ds["sha256"] == hashlib.sha256(digits_zip).hexdigest()
    assert response.headers["location"] == f"/v1/datasets/{ds['id']}"
    assert sorted(p.name for p in stored.iterdir()) == [str(d) for d in range(10)]
    assert http.get(f"/v1/datasets/{ds['id']}").json() == ds
    summary = {k: v for k, v in ds.items() if k not in ("classes", "class_counts")}
    assert http.get("/v1/datasets").json()["data"] == [{**summary, "num_classes": 10}]

    plan = http.post("/v1/plans", json=job_body(dataset={"id": ds["id"]}))
    assert plan.status_code == 200, plan.text
    assert plan.json()["model"]["num_classes"] == 10
    job = http.post("/v1/jobs", json=job_body(dataset={"id": ds["id"]}))
    assert job.status_code == 202, job.text


def test_upload_csv_and_jsonl(http: httpx.Client) -> None:
    rows = "text,label\n" + "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(8))
    csv = upload(http, "reviews.csv", rows.encode(), name="My reviews")
    assert csv.status_code == 201, csv.text
    assert csv.json()["name"] == "My reviews"
    assert csv.json()["format"] == "csv"
    assert csv.json()["class_counts"] == {"neg": 4, "pos": 4}
    lines = "".join(json.dumps({"text": f"t{i}", "label": i % 3}) + "\n" for i in range(9))
    jsonl = upload(http, "topics.jsonl", lines.encode())
    assert jsonl.status_code == 201, jsonl.text
    assert jsonl.json()["format"] == "jsonl"
    assert jsonl.json()["classes"] == ["0", "1", "2"]
    listed = http.get("/v1/datasets", params={"limit": 1}).json()
    assert [d["id"] for d in listed["data"]] == [jsonl.json()["id"]]
    assert listed["has_more"] is True
    rest = http.get("/v1/datasets", params={"after": jsonl.json()["id"]}).json()
    assert [d["id"] for d in rest["data"]] == [csv.json()["id"]]
    assert rest["has_more"] is False


def test_delete_removes_record_and_files(
    api: ApiServer, http: httpx.Client, store: redis.Redis
) -> None:
    ds = upload(http, "two.zip", two_class_zip()).json()
    assert (api.uploads_dir / ds["id"]).is_dir()
    assert http.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert not (api.uploads_dir / ds["id"]).exists()
    problem(http.get(f"/v1/datasets/{ds['id']}"), 404)
    err = problem(http.delete(f"/v1/datasets/{ds['id']}"), 404)
    assert err["detail"] == f"no dataset {ds['id']!r}"
    assert_nothing_stored(api, store)


def tar_with(member: tarfile.TarInfo, content: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("a/1.png", "a/2.png", "b/1.png", "b/2.png"):
            data = png()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        tf.addfile(member, io.BytesIO(content) if content else None)
    return buf.getvalue()


def symlink_member() -> tarfile.TarInfo:
    info = tarfile.TarInfo("a/evil.png")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    return info


REFUSALS = [
    (
        "dotdot.zip",
        lambda: two_class_zip(**{"a/../../escape.png": png()}),
        "archive_unsafe_path",
        "archive member 'a/../../escape.png' contains a '..' component",
    ),
    (
        "absolute.zip",
        lambda: two_class_zip(**{"/tmp/abs.png": png()}),
        "archive_unsafe_path",
        "archive member '/tmp/abs.png' is an absolute path",
    ),
    (
        "link.tar.gz",
        lambda: tar_with(symlink_member()),
        "archive_link",
        "archive member 'a/evil.png' is a link; replace links with the files themselves",
    ),
    (
        "many.zip",
        lambda: zip_of({f"c{i % 2}/{i}.png": b"x" for i in range(MAX_ARCHIVE_MEMBERS + 1)}),
        "archive_too_many_members",
        f"the archive has more than {MAX_ARCHIVE_MEMBERS} members",
    ),
    (
        "broken.zip",
        lambda: two_class_zip(**{"b/3.png": b"\x89PNG\r\n\x1a\nnot really"}),
        "undecodable_image",
        "image 'b/3.png' cannot be decoded",
    ),
    (
        "notes.txt",
        lambda: b"hello",
        "bad_format",
        "cannot tell what 'notes.txt' holds",
    ),
]


@pytest.mark.parametrize(
    ("filename", "make", "code", "message"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_refused_uploads_leave_nothing(
    api: ApiServer,
    http: httpx.Client,
    store: redis.Redis,
    filename: str,
    make,
    code: str,
    message: str,
) -> None:
    err = problem(upload(http, filename, make()), 422)
    assert err["code"] == code
    assert message in err["detail"]
    assert_nothing_stored(api, store)


def test_member_is_named_in_the_problem(http: httpx.Client) -> None:
    err = problem(upload(http, "dotdot.zip", two_class_zip(**{"../x.png": png()})), 422)
    assert err["member"] == "../x.png"
    assert err["detail"].endswith("archives may only hold relative paths inside the dataset folder")


def test_upload_over_the_limit_is_413(
    api: ApiServer, http: httpx.Client, store: redis.Redis
) -> None:
    content = b"text,label\n" + b"x" * MAX_UPLOAD_BYTES
    err = problem(upload(http, "big.csv", content), 413)
    assert err["code"] == "upload_too_large"
    assert err["detail"].startswith(f"the upload is larger than the limit of {MAX_UPLOAD_BYTES}")
    assert_nothing_stored(api, store)


def test_upload_over_the_limit_without_content_length_is_413(
    api: ApiServer, store: redis.Redis
) -> None:
    boundary = "thawboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\ntext,label\n"
    ).encode()

    def body():
        yield head
        for _ in range(MAX_UPLOAD_BYTES // 10_000 + 2):
            yield b"y" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    with api.client() as client:
        response = client.post(
            "/v1/datasets",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert "content-length" not in response.request.headers
    err = problem(response, 413)
    assert err["limit"] == MAX_UPLOAD_BYTES
    assert_nothing_stored(api, store)


def test_form_problems(api: ApiServer, http: httpx.Client, store: redis.Redis) -> None:
    err = problem(http.post("/v1/datasets", data={"name": "x"}), 415)
    assert err["detail"] == "send the dataset as multipart/form-data with a 'file' part"
    err = problem(http.post("/v1/datasets", files={"other": ("a.csv", b"x")}), 422)
    assert err["detail"] == "unknown form field 'other'; send 'file' and optionally 'name'"
    err = problem(http.post("/v1/datasets", files={"name": (None, b"only")}), 422)
    assert err["detail"] == "no 'file' part; send the dataset file in a form field named 'file'"
    err = problem(upload(http, "empty.csv", b""), 422)
    assert err["code"] == "empty_dataset"
    assert_nothing_stored(api, store)


def test_dataset_of_another_path_is_404(http: httpx.Client) -> None:
    problem(http.get("/v1/datasets/ds_0123456789abcdef01234567"), 404)
    problem(http.get("/v1/datasets/..%2Fetc"), 404)
    assert http.get("/v1/datasets").json() == {"data": [], "has_more": False}


def test_stored_path_is_inside_the_uploads_folder(
    api: ApiServer, http: httpx.Client, store: redis.Redis
) -> None:

    ds = upload(http, "two.zip", two_class_zip()).json()
    record = json.loads(store.hget(f"thaw:dataset:{ds['id']}", "record"))
    assert Path(record["path"]) == (api.uploads_dir / ds["id"] / "data").resolve()
    assert record["has_explicit_val"] is False
