"""Decoded-input cache: each image is opened and decoded once per job, whatever the number of
epochs, and training from the cached pixels is bitwise equal to decoding every epoch."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from digits import write_digits_folder
from PIL import Image
from safetensors.torch import load_file
from support import bits_equal

import thaw.training.feature_cache_setup as setup
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train
from thaw.training.reporter import NullReporter

PER_CLASS = 3  # 30 images: 20 train, 10 validation


def _spec(**hp: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"path": "digits", "format": "image_folder"},
            "freeze": {"default": "frozen", "rules": [{"match": "layer4", "trainable": True}]},
            "hyperparameters": {
                "epochs": 3,
                "batch_size": 8,
                "image_size": 32,
                "lr": 1e-2,
                "feature_cache": "off",
                **hp,
            },
        }
    )


def _settings(tmp: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        datasets_dir=tmp / "datasets",
        models_dir=tmp / "models",
        progress_interval_seconds=0,
        **extra,
    )


class Lines(NullReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.val: dict[int, dict[str, float]] = {}

    def log(self, level: str, message: str) -> None:
        self.lines.append(message)

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.val[epoch] = dict(metrics)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts PIL opens per file name while the real ``Image.open`` decodes."""
    counts: Counter[str] = Counter()
    real = Image.open

    def counting(fp: Any, *args: Any, **kwargs: Any) -> Image.Image:
        counts[Path(fp).name] += 1
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return counts


def _final(run: Path) -> dict[str, Any]:
    last = json.loads((run / "checkpoints" / "index.json").read_text())["last"]
    return load_file(str(run / "checkpoints" / last / "model.safetensors"))


@pytest.mark.parametrize("augment", ["flip", "standard"])
def test_each_image_is_decoded_once_and_training_is_bitwise_equal_to_decoding_every_epoch(
    tmp_path: Path, opened: Counter[str], monkeypatch: pytest.MonkeyPatch, augment: str
):
    write_digits_folder(tmp_path / "datasets" / "digits", per_class=PER_CLASS)
    spec = _spec(augment=augment)
    cached = Lines()
    train(spec, tmp_path / "cached", _settings(tmp_path), cached)
    assert len(opened) == 10 * PER_CLASS
    assert set(opened.values()) == {1}
    assert "decoded-input cache: 20 images of 32 px, decoded once per job (0.1 MiB in memory)" in (
        cached.lines
    )

    opened.clear()
    monkeypatch.setattr(setup, "attach_decoded_cache", lambda *args: [])
    plain = Lines()
    train(spec, tmp_path / "plain", _settings(tmp_path), plain)
    assert set(opened.values()) == {3}  # every epoch decodes every image again

    assert cached.val == plain.val
    a, b = _final(tmp_path / "cached"), _final(tmp_path / "plain")
    assert a.keys() == b.keys() and all(bits_equal(a[k], b[k]) for k in a)


def test_beyond_the_budget_pixels_are_memory_mapped_in_the_run_folder_and_removed(
    tmp_path: Path, opened: Counter[str]
):
    write_digits_folder(tmp_path / "datasets" / "digits", per_class=PER_CLASS)
    spec = _spec(epochs=2, augment="flip")
    in_memory = Lines()
    train(spec, tmp_path / "mem", _settings(tmp_path), in_memory)
    opened.clear()
    spilled = Lines()
    run = tmp_path / "spill"
    train(spec, run, _settings(tmp_path, decoded_cache_bytes=0), spilled)
    assert set(opened.values()) == {1}
    assert any("in memory-mapped file train.u8" in line for line in spilled.lines)
    assert any("in memory-mapped file val.u8" in line for line in spilled.lines)
    assert spilled.val == in_memory.val
    a, b = _final(tmp_path / "mem"), _final(run)
    assert all(bits_equal(a[k], b[k]) for k in a)
    assert not (run / "decoded_cache").exists()


@pytest.mark.parametrize("budget", [10**9, 0])
def test_dataloader_worker_processes_fill_the_shared_cache(tmp_path: Path, budget: int):
    import torch
    from torch.utils.data import DataLoader

    from thaw.data import build_datasets
    from thaw.data.decoded import attach_decoded_cache

    root = write_digits_folder(tmp_path / "digits", per_class=2)
    data = build_datasets(root, modality="image", image_size=32, validation=0.5)
    cache = attach_decoded_cache(data, budget, tmp_path / "decoded")[0]
    assert not cache.filled.any()
    from_workers = [x for x, _ in DataLoader(data.train, batch_size=4, num_workers=2)]
    assert cache.filled.all()  # filled by the workers, seen by this process
    data.train.decoded = None
    decoded_here = [x for x, _ in DataLoader(data.train, batch_size=4)]
    assert all(torch.equal(a, b) for a, b in zip(from_workers, decoded_here, strict=True))
