"""Training datasets: seeded stratified split, image tensors, synthetic data, decode errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from digits import write_digits_folder
from PIL import Image
from torch._utils import ExceptionWrapper
from torch.utils.data import DataLoader

from thaw.data import (
    DatasetError,
    ImageDecodeError,
    Synthetic,
    build_datasets,
    count_examples,
    inspect_image_folder,
    stratified_split,
    synthetic_dataset,
    synthetic_info,
)

DIGITS = [str(d) for d in range(10)]


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "digits", per_class=5)


def test_stratified_split_is_seeded_and_covers_every_class() -> None:
    labels = [0] * 10 + [1] * 5 + [2] * 1 + [3] * 2
    train, val = stratified_split(labels, 0.2, seed=7)
    assert (train, val) == stratified_split(labels, 0.2, seed=7)
    assert sorted(train + val) == list(range(18))
    assert [sum(labels[i] == c for i in val) for c in range(4)] == [2, 1, 0, 1]
    assert val == sorted(val)
    assert 15 in train
    other_seeds = {tuple(stratified_split(labels, 0.2, seed=s)[1]) for s in range(1, 6)}
    assert len(other_seeds | {tuple(val)}) > 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split(labels, 1.0, seed=0)


def test_image_tensors_are_resized_and_normalized(digits: Path) -> None:
    data = build_datasets(
        digits,
        "image_folder",
        modality="image",
        image_size=16,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        seed=0,
    )
    assert data.classes == DIGITS
    assert data.collate_fn is None
    assert (len(data.train), len(data.val)) == (40, 10)
    x, label = data.train[0]
    assert x.shape == (3, 16, 16)
    assert x.dtype == torch.float32
    assert x.is_contiguous()
    path = digits / str(data.train.relative_paths[0])
    assert path.parent.name == DIGITS[label]
    resized = Image.open(path).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)
    expected = (np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    assert x[:, 0, 0].tolist() == [-2.0, -2.0, -2.0]
    assert torch.equal(data.train[0][0], x)
    assert {data.val[i][1] for i in range(len(data.val))} == set(range(10))


def test_split_is_deterministic_and_matches_count_examples(digits: Path) -> None:
    a = build_datasets(digits, modality="image", image_size=8, seed=1, validation=0.3)
    b = build_datasets(digits, modality="image", image_size=8, seed=1, validation=0.3)
    assert a.val.relative_paths.tolist() == b.val.relative_paths.tolist()
    assert a.train.relative_paths.tolist() == b.train.relative_paths.tolist()
    assert not set(a.val.relative_paths.tolist()) & set(a.train.relative_paths.tolist())
    counts = count_examples(inspect_image_folder(digits, decode=False), 0.3)
    assert (len(a.train), len(a.val)) == (counts.train, counts.val) == (30, 20)


def test_explicit_val_folder_and_other_path(tmp_path: Path) -> None:
    write_digits_folder(tmp_path / "ds" / "train", per_class=3)
    write_digits_folder(tmp_path / "ds" / "val", per_class=1)
    data = build_datasets(tmp_path / "ds", modality="image", image_size=8)
    assert (len(data.train), len(data.val)) == (30, 10)
    assert data.val.relative_paths.tolist()[0].startswith("val/0/")
    split = build_datasets(tmp_path / "ds", modality="image", image_size=8, validation=0.5)
    assert (len(split.train), len(split.val)) == (10, 20)
    other = write_digits_folder(tmp_path / "holdout", per_class=2)
    held = build_datasets(tmp_path / "ds" / "train", modality="image", validation=other)
    assert (len(held.train), len(held.val)) == (30, 20)
    assert held.val.root == str(other)


def test_explicit_classes_fix_the_label_order(digits: Path) -> None:
    reversed_classes = DIGITS[::-1]
    data = build_datasets(digits, modality="image", image_size=8, classes=reversed_classes)
    assert data.classes == reversed_classes
    for i in range(len(data.train)):
        folder = data.train.relative_paths[i].split("/")[0]
        assert data.train[i][1] == 9 - int(folder)
    with pytest.raises(DatasetError) as caught:
        build_datasets(digits, modality="image", classes=DIGITS[:9])
    assert caught.value.code == "unknown_label"
    assert "'9'" in caught.value.message


def test_augment_flips_only_when_asked(digits: Path) -> None:
    plain = build_datasets(digits, modality="image", image_size=8)
    x = plain.train[3][0]
    assert all(torch.equal(plain.train[3][0], x) for _ in range(5))
    flipping = build_datasets(digits, modality="image", image_size=8, augment=True)
    torch.manual_seed(0)
    seen = {
        "same" if torch.equal(y, x) else "flipped"
        for y, _ in (flipping.train[3] for _ in range(20))
    }
    assert seen == {"same", "flipped"}
    torch.manual_seed(1)
    for _ in range(10):
        y = flipping.train[3][0]
        assert torch.equal(y, x) or torch.equal(y, x.flip(-1))
    assert all(torch.equal(flipping.val[0][0], plain.val[0][0]) for _ in range(5))


def test_decode_error_while_training_names_the_file(digits: Path) -> None:
    data = build_datasets(digits, modality="image", image_size=8)
    victim = str(data.train.relative_paths[4])
    (digits / victim).write_bytes(b"garbage")
    with pytest.raises(ImageDecodeError) as caught:
        data.train[4]
    assert caught.value.code == "undecodable_image"
    assert caught.value.path == victim
    message = caught.value.message
    try:
        data.train[4]
    except ImageDecodeError:
        in_worker = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(ImageDecodeError) as caught:
        in_worker.reraise()
    assert caught.value.code == "undecodable_image"
    assert caught.value.message == message
    assert message.startswith(f"image '{victim}' cannot be decoded (")


def test_modality_mismatch_and_bad_split(digits: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        build_datasets(digits, modality="text", tokenizer=object())
    assert caught.value.code == "bad_format"
    assert "holds images but the model takes texts" in caught.value.message
    tiny = tmp_path / "tiny"
    for d in ("a", "b"):
        shutil.copytree(digits / "0", tiny / d)
        for extra in sorted((tiny / d).iterdir())[1:]:
            extra.unlink()
    with pytest.raises(DatasetError) as caught:
        build_datasets(tiny, modality="image")
    assert caught.value.code == "too_few_examples"


def test_synthetic_images_are_deterministic_balanced_and_learnable() -> None:
    data = build_datasets(Synthetic(4, 400), modality="image", image_size=8, seed=3)
    assert data.classes == ["class_0", "class_1", "class_2", "class_3"]
    counts = count_examples(synthetic_info(4, 400))
    assert (len(data.train), len(data.val)) == (counts.train, counts.val) == (320, 80)
    assert np.bincount(data.val.labels).tolist() == [20, 20, 20, 20]
    again = synthetic_dataset(4, 400, "image", image_size=8, seed=3)
    index = int(data.train.indices[5])
    assert torch.equal(data.train[5][0], again[index][0])
    assert data.train[5][1] == again[index][1]
    assert not torch.equal(
        again[0][0], synthetic_dataset(4, 400, "image", image_size=8, seed=4)[0][0]
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        for xb, yb in DataLoader(data.train, batch_size=32, shuffle=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    xv, yv = next(iter(DataLoader(data.val, batch_size=len(data.val))))
    accuracy = (model(xv).argmax(1) == yv).float().mean().item()
    assert accuracy > 0.9
