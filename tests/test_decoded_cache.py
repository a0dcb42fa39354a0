"""Decoded-input cache: each image is opened and decoded once per job, whatever the number of
epochs, and training from the cached pixels is bitwise equal to decoding every epoch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from digits import write_digits_folder
from PIL import Image
from support import bits_equal, final_weights

import thaw.caching.inputs as caching_inputs
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
    monkeypatch.setattr(caching_inputs, "attach_decoded_cache", lambda *args: {})
    plain = Lines()
    train(spec, tmp_path / "plain", _settings(tmp_path), plain)
    assert set(opened.values()) == {3}  # every epoch decodes every image again

    assert cached.val == plain.val
    a, b = final_weights(tmp_path / "cached"), final_weights(tmp_path / "plain")
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
    a, b = final_weights(tmp_path / "mem"), final_weights(run)
    assert all(bits_equal(a[k], b[k]) for k in a)
    assert not (run / "decoded_cache").exists()


@pytest.mark.parametrize("budget", [10**9, 0])
def test_dataloader_worker_processes_fill_the_shared_cache(tmp_path: Path, budget: int):
    import torch
    from torch.utils.data import DataLoader

    from thaw.caching.inputs import attach_decoded_cache
    from thaw.data import build_datasets

    root = write_digits_folder(tmp_path / "digits", per_class=2)
    data = build_datasets(root, modality="image", image_size=32, validation=0.5)
    cache = attach_decoded_cache(data, budget, tmp_path / "decoded")["train"]
    assert not cache.filled.any()
    from_workers = [x for x, _ in DataLoader(data.train, batch_size=4, num_workers=2)]
    assert cache.filled.all()  # filled by the workers, seen by this process
    data.train.decoded = None
    decoded_here = [x for x, _ in DataLoader(data.train, batch_size=4)]
    assert all(torch.equal(a, b) for a, b in zip(from_workers, decoded_here, strict=True))


def test_flip_trains_from_both_cached_views_like_an_uncached_run(tmp_path: Path):
    """augment "flip" with the feature cache: each training sample's prefix output is kept
    for both views and the sampler's draw picks the one the uncached run sees."""
    write_digits_folder(tmp_path / "datasets" / "digits", per_class=PER_CLASS)
    body = {"augment": "flip", "epochs": 3, "lr_scheduler": "constant"}
    runs = {}
    for mode in ("auto", "off"):
        reporter = Lines()
        spec = _spec(**body, feature_cache=mode)
        train(spec, tmp_path / mode, _settings(tmp_path), reporter)
        runs[mode] = reporter
    cached, plain = runs["auto"], runs["off"]
    assert "feature cache: phase 0 trains past layer3 from its cached output (0.2 MiB)" in (
        cached.lines
    )
    assert "feature cache: epoch 3 reuses the features of layer3" in cached.lines
    assert any("filled the output of layer3 for 30 samples" in line for line in cached.lines), (
        cached.lines
    )
    assert set(cached.val) == {1, 2, 3}
    for epoch, metrics in plain.val.items():
        for key, value in metrics.items():
            assert cached.val[epoch][key] == pytest.approx(value, rel=1e-4, abs=1e-4), (epoch, key)
    a, b = final_weights(tmp_path / "auto"), final_weights(tmp_path / "off")
    frozen = [k for k in a if not k.startswith(("layer4.", "fc."))]
    assert len(frozen) > 60 and all(bits_equal(a[k], b[k]) for k in frozen)
    moved = [k for k in a if k.startswith("layer4.") and k.endswith("weight")]
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in moved)


def test_sampler_flips_depend_on_seed_epoch_and_index_only():
    from thaw.training.loaders import EpochSampler

    sampler = EpochSampler(list(range(64)), seed=3, flips=True)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(64))
    flips = dict(first)
    assert dict(sampler) == flips  # the same epoch draws the same views again
    assert 16 < sum(flips.values()) < 48
    sampler.set_epoch(2)
    assert dict(sampler) != flips
    sampler.set_epoch(1)
    assert dict(sampler) == flips
    assert all(isinstance(i, int) for i in EpochSampler(list(range(8)), seed=3))


def test_once_every_image_is_decoded_batches_are_read_without_loader_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Loader workers decode the first epoch; the next reads the decoded pixels in the
    training process (no worker processes alive), and trains as a run that keeps them."""
    import multiprocessing

    class Children(Lines):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 1
            self.seen: dict[int, set[int]] = {1: set(), 2: set()}

        def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
            super().metrics(epoch, metrics)
            self.epoch = epoch + 1

    def record(module: torch.nn.Module, args: tuple, output: Any) -> None:
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
            children.seen[children.epoch].add(len(multiprocessing.active_children()))

    write_digits_folder(tmp_path / "datasets" / "digits", per_class=PER_CLASS)
    spec = _spec(epochs=2, augment="flip", num_workers=2)
    children = Children()
    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        train(spec, tmp_path / "served", _settings(tmp_path), children)
    finally:
        handle.remove()
    assert min(children.seen[1]) > 0  # the first epoch's batches come from loader workers
    assert children.seen[2] == {0}

    monkeypatch.setattr(caching_inputs, "attach_decoded_cache", lambda *args: {})
    kept = Lines()  # no decoded cache: loader workers read every epoch
    train(spec, tmp_path / "kept", _settings(tmp_path), kept)
    assert kept.val == children.val
    a, b = final_weights(tmp_path / "served"), final_weights(tmp_path / "kept")
    assert all(bits_equal(a[k], b[k]) for k in a)
