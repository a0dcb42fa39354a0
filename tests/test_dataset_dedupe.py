"""The same file uploaded twice by one key is stored once; another key stores its own."""

from __future__ import annotations

import httpx
import pytest
from api_fixtures import ApiServer

pytestmark = pytest.mark.in_process

CSV = b"text,label\n" + b"".join(f"sample {i},{'ab'[i % 2]}\n".encode() for i in range(8))


def _upload(http: httpx.Client, content: bytes, name: str) -> httpx.Response:
    return http.post("/v1/datasets", files={"file": ("d.csv", content)}, data={"name": name})


def test_an_identical_upload_answers_with_the_stored_dataset(
    http: httpx.Client, api: ApiServer
) -> None:
    first = _upload(http, CSV, "first")
    assert first.status_code == 201, first.text
    again = _upload(http, CSV, "again")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == f"/v1/datasets/{first.json()['id']}"
    assert [d["id"] for d in http.get("/v1/datasets").json()["data"]] == [first.json()["id"]]
    assert sorted(p.name for p in api.uploads_dir.iterdir() if not p.name.startswith(".")) == [
        first.json()["id"]
    ]
    other = _upload(http, CSV + b"sample 9,b\n", "other")
    assert other.status_code == 201, other.text
    assert other.json()["id"] != first.json()["id"]
