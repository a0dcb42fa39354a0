"""Inspection of image folders: layout, counts and decoding."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from digits import digit_counts, write_digits_folder, zip_folder

from thaw.data import (
    DatasetError,
    DatasetInfo,
    ExampleCounts,
    count_examples,
    extract_archive,
    inspect_dataset,
    inspect_image_folder,
    inspect_path,
    synthetic_info,
    upload_kind,
)

DIGITS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def all_digits(module_tmp_path: Path) -> Path:
    return write_digits_folder(module_tmp_path / "digits")


@pytest.fixture
def small_digits(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "digits", per_class=5)


def test_digits_folder_inspection(all_digits: Path) -> None:
    info = inspect_image_folder(all_digits)
    assert info == DatasetInfo(
        format="image_folder",
        classes=DIGITS,
        class_counts=digit_counts(),
        num_examples=1797,
        has_explicit_val=False,
    )
    assert info.class_counts["8"] == 174
    assert inspect_dataset(all_digits, "image_folder") == info


def test_uploaded_zip_inspects_after_unwrap(tmp_path: Path) -> None:
    folder = write_digits_folder(tmp_path / "src", per_class=3)
    archive = zip_folder(folder, tmp_path / "digits.zip", top="digits")
    root = extract_archive(
        archive, tmp_path / "ds", max_members=100, max_uncompressed_bytes=10_000_000
    )
    info = inspect_image_folder(root)
    assert info.classes == DIGITS
    assert info.class_counts == dict.fromkeys(DIGITS, 3)
    assert info.num_examples == 30


def test_train_val_layout(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "ds" / "train", per_class=4)
    write_digits_folder(tmp_path / "ds" / "val", per_class=2)
    shutil.rmtree(tmp_path / "ds" / "val" / "7")
    info = inspect_image_folder(tmp_path / "ds")
    assert info.has_explicit_val is True
    assert info.classes == DIGITS
    assert info.class_counts == {d: 4 if d == "7" else 6 for d in DIGITS}
    assert info.val_class_counts == {d: 0 if d == "7" else 2 for d in DIGITS}
    assert info.num_examples == 58
    assert count_examples(info) == ExampleCounts(train=40, val=18)
    assert count_examples(info, 0.25) == ExampleCounts(train=30, val=10)


def test_count_examples_for_a_split(small_digits: Path) -> None:
    info = inspect_image_folder(small_digits)
    assert count_examples(info) == ExampleCounts(train=40, val=10)
    assert count_examples(info, 0.5) == ExampleCounts(train=20, val=30)
    other = DatasetInfo("image_folder", ["a", "b"], {"a": 3, "b": 4}, 7)
    assert count_examples(info, other) == ExampleCounts(train=50, val=7)


def test_undecodable_image_is_reported_with_its_path(small_digits: Path) -> None:
    (small_digits / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(small_digits)
    assert caught.value.code == "undecodable_image"
    assert caught.value.path == "3/broken.png"
    assert caught.value.message.startswith("image '3/broken.png' cannot be decoded")
    assert str(small_digits) not in caught.value.message


def test_truncated_image_is_reported(small_digits: Path) -> None:
    victim = sorted((small_digits / "5").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(small_digits)
    assert caught.value.code == "undecodable_image"
    assert caught.value.path == f"5/{victim.name}"


def test_layout_check_alone_skips_decoding(small_digits: Path) -> None:
    (small_digits / "3" / "broken.png").write_bytes(b"nope")
    info = inspect_image_folder(small_digits, decode=False)
    assert info.class_counts["3"] == 6


def test_junk_files_are_ignored(small_digits: Path) -> None:
    (small_digits / "0" / ".DS_Store").write_bytes(b"junk")
    (small_digits / "__MACOSX").mkdir()
    (small_digits / "__MACOSX" / "x.png").write_bytes(b"junk")
    (small_digits / "README.txt").write_text("top-level files are not data")
    assert inspect_image_folder(small_digits).class_counts == dict.fromkeys(DIGITS, 5)


def test_one_class_is_too_few(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "all", per_class=2)
    shutil.copytree(tmp_path / "all" / "4", tmp_path / "ds" / "4")
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(tmp_path / "ds")
    assert caught.value.code == "too_few_classes"
    assert "found only '4'" in caught.value.message


def test_unsupported_file_is_named(small_digits: Path) -> None:
    (small_digits / "2" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(small_digits)
    assert caught.value.code == "unsupported_file"
    assert caught.value.path == "2/notes.txt"


def test_empty_class_folder_and_empty_dataset(tmp_path: Path, small_digits: Path) -> None:
    (small_digits / "empty").mkdir()
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(small_digits)
    assert (caught.value.code, caught.value.path) == ("empty_dataset", "empty")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(tmp_path / "nothing")
    assert caught.value.code == "empty_dataset"


def test_val_class_missing_from_train(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "ds" / "train", per_class=2)
    write_digits_folder(tmp_path / "ds" / "val", per_class=1)
    shutil.rmtree(tmp_path / "ds" / "train" / "9")
    with pytest.raises(DatasetError) as caught:
        inspect_image_folder(tmp_path / "ds")
    assert caught.value.code == "unknown_label"
    assert "val/ has class folders that train/ lacks: 9" in caught.value.message


def test_upload_kind() -> None:
    assert upload_kind("Digits.ZIP") == "archive"
    assert upload_kind("d.tar.gz") == "archive"
    assert upload_kind("d.tgz") == "archive"
    assert upload_kind("reviews.csv") == "csv"
    assert upload_kind("reviews.jsonl") == "jsonl"
    with pytest.raises(DatasetError) as caught:
        upload_kind("d.rar")
    assert caught.value.code == "bad_format"


def test_synthetic_info_is_balanced() -> None:
    info = synthetic_info(3, 10)
    assert info.classes == ["class_0", "class_1", "class_2"]
    assert info.class_counts == {"class_0": 4, "class_1": 3, "class_2": 3}
    assert count_examples(info, 0.2) == ExampleCounts(train=7, val=3)


def test_tar_of_dot_inspects(tmp_path: Path) -> None:
    folder = write_digits_folder(tmp_path / "src", per_class=2)
    archive = tmp_path / "digits.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=".")
    with tarfile.open(archive) as tf:
        assert tf.getnames()[:2] == [".", "./0"]
    root = extract_archive(archive, tmp_path / "ds", max_members=50, max_uncompressed_bytes=10**7)
    assert inspect_image_folder(root).class_counts == dict.fromkeys(DIGITS, 2)


def test_inspect_path_infers_format_and_carries_loc(small_digits: Path, tmp_path: Path) -> None:
    (small_digits / "3" / "broken.png").write_bytes(b"nope")
    info = inspect_path(small_digits, loc=("dataset", "path"))
    assert (info.format, info.num_examples) == ("image_folder", 51)
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("text,label\na,x\nb,y\n", encoding="utf-8")
    assert inspect_path(csv_file).class_counts == {"x": 1, "y": 1}
    with pytest.raises(DatasetError) as caught:
        inspect_path(small_digits, "image_folder", loc=("dataset", "path"), decode=True)
    assert (caught.value.code, caught.value.loc) == ("undecodable_image", ("dataset", "path"))
    with pytest.raises(DatasetError) as caught:
        inspect_path(tmp_path / "data.parquet", loc=("dataset", "path"))
    assert caught.value.code == "bad_format"
    assert caught.value.loc == ("dataset", "path")
