"""dataset.path stays inside THAW_DATASETS_DIR for every file read: links out of it are
refused, in a class folder or a file, and no error lists a name from beyond it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_fixtures import ApiServer, job_body, problem
from PIL import Image

from thaw.data import DatasetError, build_datasets, list_image_folder

pytestmark = pytest.mark.in_process

SECRET = "secret-name-outside.txt"


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path)


@pytest.fixture
def roots(api: ApiServer, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The server's datasets folder (emptied afterwards) and a folder outside it that
    holds images and a file whose name must never show."""
    datasets = api.root / "datasets"
    outside = tmp_path / "outside"
    _png(outside / "a.png")
    (outside / SECRET).write_text("x")
    yield datasets, outside
    for child in datasets.iterdir():
        if child.is_symlink() or child.is_file():
            child.unlink()
        else:
            shutil.rmtree(child)


def _plan(http: httpx.Client, path: str) -> httpx.Response:
    return http.post("/v1/plans", json=job_body(dataset={"path": path}))


def test_class_folder_linking_out_of_the_root_is_refused(
    http: httpx.Client, roots: tuple[Path, Path]
) -> None:
    datasets, outside = roots
    _png(datasets / "mixed" / "dog" / "d.png")
    (datasets / "mixed" / "cat").symlink_to("/etc")
    err = problem(_plan(http, "mixed"), 422)
    assert err["code"] == "path_outside_root"
    assert err["member"] == "cat"
    assert err["detail"] == (
        "folder 'cat' is a link that leaves the datasets folder; copy its contents into "
        "the dataset instead of linking to them"
    )
    (datasets / "mixed" / "cat").unlink()
    (datasets / "mixed" / "cat").symlink_to(outside)
    assert problem(_plan(http, "mixed"), 422)["member"] == "cat"


def test_a_linked_image_file_leaving_the_root_is_refused(
    http: httpx.Client, roots: tuple[Path, Path]
) -> None:
    datasets, outside = roots
    _png(datasets / "files" / "dog" / "d.png")
    (datasets / "files" / "cat").mkdir()
    (datasets / "files" / "cat" / "c.png").symlink_to(outside / "a.png")
    err = problem(_plan(http, "files"), 422)
    assert (err["code"], err["member"]) == ("path_outside_root", "cat/c.png")


def test_the_root_itself_lists_no_name_from_beyond_it(
    http: httpx.Client, roots: tuple[Path, Path]
) -> None:
    datasets, outside = roots
    (datasets / "etc").symlink_to("/etc")
    (datasets / "elsewhere").symlink_to(outside)
    for path in (".", "./", "etc", "elsewhere"):
        response = _plan(http, path)
        assert response.status_code == 422, response.text
        assert SECRET not in response.text and "passwd" not in response.text
    assert problem(_plan(http, "."), 422)["code"] == "path_outside_root"
    assert problem(_plan(http, "etc"), 422)["errors"][0]["loc"] == "dataset.path"


def test_links_that_stay_inside_the_root_are_allowed(
    http: httpx.Client, roots: tuple[Path, Path]
) -> None:
    datasets, _ = roots
    _png(datasets / "shared" / "cat" / "c.png")
    _png(datasets / "mixed" / "dog" / "d.png")
    (datasets / "mixed" / "cat").symlink_to(datasets / "shared" / "cat")
    response = _plan(http, "mixed")
    assert response.status_code == 200, response.text


def test_training_data_refuses_the_same_links(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _png(root / "mixed" / "dog" / "d.png")
    _png(tmp_path / "outside" / "cat" / "c.png")
    (root / "mixed" / "cat").symlink_to(tmp_path / "outside" / "cat")
    with pytest.raises(DatasetError) as info:
        build_datasets(root / "mixed", modality="image", image_size=8, within=(root,))
    assert (info.value.code, info.value.path) == ("path_outside_root", "cat")
    inside = list_image_folder(root / "mixed", within=(tmp_path,))
    assert inside.classes == ["cat", "dog"]
