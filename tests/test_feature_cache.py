"""The feature cache is exact: a cached run matches an uncached one of the same spec, keeps
frozen tensors bit-identical, and resumes bitwise-equal to an unbroken cached run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from support import bits_equal, final_weights, minilm_dir

from thaw.data.shape import DataShape
from thaw.freezing.plan import plan_table
from thaw.freezing.resolve import resolve
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train
from thaw.training.reporter import NullReporter

RESNET = {
    "base_model": {"source": "torchvision", "name": "resnet18"},
    "dataset": {"synthetic": {"num_classes": 3, "num_examples": 40}},
    "freeze": {"default": "frozen", "rules": [{"match": "fc", "trainable": True}]},
    "schedule": [{"at_epoch": 3, "unfreeze": ["layer4"]}],
    "hyperparameters": {"epochs": 3, "batch_size": 8, "image_size": 32, "lr": 1e-2},
}
FROZEN = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")


class Recorder(NullReporter):
    def __init__(self, stop_at: int | None = None):
        self.losses: list[float] = []
        self.val: dict[int, dict[str, float]] = {}
        self.lines: list[str] = []
        self.entries: list[dict[str, Any]] = []
        self.steps = 0
        self.stop_at = stop_at

    def progress(self, progress: dict[str, Any]) -> None:
        if "loss" in progress:
            self.losses.append(progress["loss"])

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.val[epoch] = dict(metrics)

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def log(self, level: str, message: str) -> None:
        self.lines.append(message)

    def should_stop(self) -> bool:
        self.steps += 1
        return self.stop_at is not None and self.steps > self.stop_at


def _spec(body: dict[str, Any], **hp: Any) -> JobSpec:
    merged = {**body, "hyperparameters": {**body["hyperparameters"], **hp}}
    return JobSpec.model_validate(merged)


def _settings(tmp: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp / "data", progress_interval_seconds=0, models_dir=tmp / "models", **extra
    )


def _assert_same_training(cached: Recorder, plain: Recorder) -> None:
    assert cached.losses[0] == pytest.approx(plain.losses[0], rel=1e-5)
    assert set(cached.val) == set(plain.val)
    for epoch, metrics in plain.val.items():
        for key, value in metrics.items():
            assert cached.val[epoch][key] == pytest.approx(value, rel=1e-4, abs=1e-4), (epoch, key)


def test_resnet18_cached_run_matches_uncached_and_keeps_frozen_tensors_bitwise(tmp_path):
    runs = {}
    for mode in ("auto", "off"):
        reporter = Recorder()
        train(_spec(RESNET, feature_cache=mode), tmp_path / mode, _settings(tmp_path), reporter)
        runs[mode] = reporter
    cached, plain = runs["auto"], runs["off"]
    _assert_same_training(cached, plain)
    assert "feature cache: phase 0 trains past layer4 from its cached output (0.1 MiB)" in (
        cached.lines
    )
    assert "feature cache: phase 1 trains past layer3 from its cached output (0.2 MiB)" in (
        cached.lines
    )
    assert "feature cache: epoch 2 reuses the features of layer4" in cached.lines
    assert sum("feature cache: filled the output of" in line for line in cached.lines) == 2
    assert "feature cache: phase 0 runs every layer: hyperparameters.feature_cache is 'off'" in (
        plain.lines
    )
    a, b = final_weights(tmp_path / "auto"), final_weights(tmp_path / "off")
    frozen = [k for k in a if k.startswith(FROZEN)]
    assert len(frozen) > 60
    assert all(bits_equal(a[k], b[k]) for k in frozen)
    last = cached.entries[-1]["layers"]
    for row in last:
        assert row["changed"] is row["name"].startswith(("layer4", "fc")), row["name"]
    assert not (tmp_path / "auto" / "feature_cache").exists()


def test_resnet18_cached_run_killed_mid_phase_resumes_bitwise_equal(tmp_path):
    spec = _spec(RESNET, epochs=3)
    unbroken = tmp_path / "unbroken"
    train(spec, unbroken, _settings(tmp_path), Recorder())
    broken = tmp_path / "broken"
    stopped = train(spec, broken, _settings(tmp_path), Recorder(stop_at=7))
    assert stopped.status == "cancelled" and stopped.epoch == 2
    resumed_reporter = Recorder()
    result = train(spec, broken, _settings(tmp_path), resumed_reporter)
    assert result.status == "succeeded" and result.resumed_from == 1
    assert any("filled the output of layer4" in line for line in resumed_reporter.lines)
    a, b = final_weights(unbroken), final_weights(broken)
    assert a.keys() == b.keys()
    assert all(bits_equal(a[k], b[k]) for k in a)


def test_spilled_cache_gives_the_same_run_and_is_removed(tmp_path):
    body = {**RESNET, "schedule": []}
    plain = Recorder()
    train(_spec(body, epochs=2), tmp_path / "mem", _settings(tmp_path), plain)
    spilled = Recorder()
    run = tmp_path / "spill"
    result = train(_spec(body, epochs=2), run, _settings(tmp_path, feature_cache_bytes=0), spilled)
    assert any("in memory-mapped file train-layer4.bin" in line for line in spilled.lines)
    assert spilled.losses == plain.losses and spilled.val == plain.val
    assert not (run / "feature_cache").exists()
    assert result.wall_s > 0 and result.samples_per_s > 0


def _minilm_without_dropout(tmp: Path) -> Path:
    folder = tmp / "models" / "minilm"
    shutil.copytree(minilm_dir(), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


MINILM = {
    "base_model": {"source": "huggingface", "name": "minilm"},
    "dataset": {"synthetic": {"num_classes": 3, "num_examples": 24}},
    "freeze": {
        "default": "trainable",
        "rules": [
            {"match": "bert.embeddings", "trainable": False},
            {"match": "bert.encoder.layer.[0-3]", "trainable": False},
        ],
    },
    "hyperparameters": {"epochs": 2, "batch_size": 8, "max_length": 16, "lr": 1e-3},
}


def test_minilm_cached_run_matches_uncached_with_the_attention_mask_carried(tmp_path):
    _minilm_without_dropout(tmp_path)
    runs = {}
    for mode in ("auto", "off"):
        reporter = Recorder()
        train(_spec(MINILM, feature_cache=mode), tmp_path / mode, _settings(tmp_path), reporter)
        runs[mode] = reporter
    assert any("trains past bert.encoder.layer.3" in line for line in runs["auto"].lines)
    assert "feature cache: epoch 2 reuses the features of bert.encoder.layer.3" in (
        runs["auto"].lines
    )
    _assert_same_training(runs["auto"], runs["off"])
    a, b = final_weights(tmp_path / "auto"), final_weights(tmp_path / "off")
    frozen = [k for k in a if k.startswith(("bert.embeddings.", *FROZEN_LAYERS))]
    assert frozen and all(bits_equal(a[k], b[k]) for k in frozen)


FROZEN_LAYERS = tuple(f"bert.encoder.layer.{i}." for i in range(4))


def test_stock_minilm_with_dropout_follow_engages_and_matches_uncached(tmp_path):
    """Stock MiniLM (dropout 0.1): the frozen prefix's dropout runs in eval mode, so the
    cache engages; dropout in the trained layers draws the same numbers in both runs."""
    shutil.copytree(minilm_dir(), tmp_path / "models" / "minilm")
    runs = {}
    for mode in ("auto", "off"):
        reporter = Recorder()
        train(_spec(MINILM, feature_cache=mode), tmp_path / mode, _settings(tmp_path), reporter)
        runs[mode] = reporter
    assert (
        "feature cache: phase 0 trains past bert.encoder.layer.3 from its cached output (0.6 MiB)"
        in runs["auto"].lines
    )
    assert "feature cache: epoch 2 reuses the features of bert.encoder.layer.3" in (
        runs["auto"].lines
    )
    _assert_same_training(runs["auto"], runs["off"])
    a, b = final_weights(tmp_path / "auto"), final_weights(tmp_path / "off")
    base = load_file(str(tmp_path / "models" / "minilm" / "model.safetensors"))
    frozen = [k for k in a if k.startswith(("bert.embeddings.", *FROZEN_LAYERS))]
    assert len(frozen) > 20
    assert all(bits_equal(a[k], b[k]) for k in frozen)
    assert all(bits_equal(a[k], base[k.removeprefix("bert.")]) for k in frozen)
    trained = [k for k in a if k.startswith("bert.encoder.layer.5.")]
    assert any(not bits_equal(a[k], base[k.removeprefix("bert.")]) for k in trained)


def _plan(body: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    spec = JobSpec.model_validate(body)
    resolved = resolve(spec, settings, DataShape(["a", "b", "c"], 40))
    return plan_table(resolved, num_samples=40)["feature_cache"]


def test_plan_shows_boundary_bytes_and_why_the_cache_does_not_engage(tmp_path):
    settings = Settings(models_dir=minilm_dir().parent)
    resnet = _plan(RESNET, settings)
    assert resnet == [
        {
            "phase": 0,
            "engages": True,
            "boundary": "layer4",
            "prefix_groups": 5,
            "bytes": 40 * 512 * 4,
            "bytes_per_sample": 512 * 4,
            "views": 1,
            "reason": None,
        },
        {
            "phase": 1,
            "engages": True,
            "boundary": "layer3",
            "prefix_groups": 4,
            "bytes": 40 * 256 * 2 * 2 * 4,
            "bytes_per_sample": 256 * 2 * 2 * 4,
            "views": 1,
            "reason": None,
        },
    ]
    flip = _plan({**RESNET, "hyperparameters": {"epochs": 3, "augment": "flip"}}, settings)
    assert flip[0]["engages"] is True and flip[0]["views"] == 2
    assert flip[0]["bytes"] == 2 * 40 * 512 * 7 * 7 * 4  # image_size 224
    active = {**MINILM["freeze"], "dropout": "active"}
    minilm = _plan(
        {**MINILM, "base_model": {"source": "huggingface", "name": "model"}, "freeze": active},
        settings,
    )
    assert minilm[0]["engages"] is False
    assert minilm[0]["boundary"] == "bert.encoder.layer.3"
    assert minilm[0]["reason"].startswith(
        "bert.embeddings.dropout (Dropout, p=0.1) draws random numbers in training"
    )
    vit = _plan(
        {
            **RESNET,
            "base_model": {"source": "torchvision", "name": "vit_b_16"},
            "freeze": {"default": "frozen", "rules": [{"match": "heads", "trainable": True}]},
            "schedule": [],
            "hyperparameters": {"epochs": 1, "image_size": 224},
        },
        settings,
    )
    assert vit[0]["engages"] is False
    assert vit[0]["reason"].startswith("class_token is a parameter, not a module")
    trained = _plan({**RESNET, "freeze": {"default": "trainable"}, "schedule": []}, settings)
    assert trained[0]["reason"] == "the first layer group (stem) trains or has BatchNorm training"


class _Conv1Samples:
    """Samples through the model's input convolution (resnet's conv1: the only one with three
    input channels), per call, counted by a global forward hook."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
            self.calls.append(int(args[0].shape[0]))


def test_each_phase_runs_its_prefix_once_per_sample_before_its_first_step(tmp_path):
    """One fill pass per phase, before the phase's first step: epoch 1 trains from the cache,
    and the prefix never runs in a training or validation step."""
    body = {
        **RESNET,
        "dataset": {"synthetic": {"num_classes": 3, "num_examples": 30}},
        "schedule": [{"at_epoch": 2, "unfreeze": ["layer4"]}],
    }
    spec = _spec(body, epochs=2, num_workers=2)
    conv1 = _Conv1Samples()
    reporter = Recorder()
    handle = torch.nn.modules.module.register_module_forward_hook(conv1)
    try:
        train(spec, tmp_path / "run", _settings(tmp_path, cache_fill_batch_size=10), reporter)
    finally:
        handle.remove()
    # First the plan's one-sample trace (unless an earlier plan in this process kept it).
    # Per phase: the split's check (the first two samples through the full model, their
    # prefix output kept), the rest of the first fill batch of 10, then the other training
    # samples and the 6 validation ones: each of the 30 samples once.
    traced, trained = conv1.calls[:-10], conv1.calls[-10:]
    assert traced in ([], [1])
    assert trained == [2, 8, 10, 4, 6] * 2
    assert sum(trained[:5]) == 30
    assert "feature cache: epoch 2 reuses" not in " ".join(reporter.lines)
    assert sum("filled the output of" in line for line in reporter.lines) == 2
    assert any("filled the output of layer4 for 30 samples" in line for line in reporter.lines)
    assert any("filled the output of layer3 for 30 samples" in line for line in reporter.lines)


def test_fill_progress_comes_before_the_first_step_and_cached_runs_need_no_loader_workers(
    tmp_path,
):
    from thaw.caching.inputs import CachedInputs, RunInputs, build_inputs
    from thaw.training.data_source import load_training_data
    from thaw.training.device import choose_placement

    class Progress(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[dict[str, Any]] = []

        def progress(self, progress: dict[str, Any]) -> None:
            self.seen.append(progress)

    body = {**RESNET, "dataset": {"synthetic": {"num_classes": 3, "num_examples": 20}}}
    body["schedule"] = []
    reporter = Progress()
    settings = _settings(tmp_path, cache_fill_batch_size=6)
    train(_spec(body, epochs=1), tmp_path / "run", settings, reporter)
    fills = [p["cache_fill"] for p in reporter.seen if "cache_fill" in p]
    assert fills[-1] == {"done": 20, "total": 20}
    first_fill = next(i for i, p in enumerate(reporter.seen) if "cache_fill" in p)
    first_step = next(i for i, p in enumerate(reporter.seen) if p["step"] > 0)
    assert first_fill < first_step and reporter.seen[first_fill]["step"] == 0

    def workers(**hp: Any) -> tuple[type, int]:
        spec = _spec(body, num_workers=2, **hp)
        data = load_training_data(spec, settings, None)
        resolved = resolve(spec, settings, DataShape(list(data.classes), len(data.train)))
        placement = choose_placement("auto", True, "cpu")
        inputs = build_inputs(spec, resolved, data, settings, tmp_path, placement, reporter.log)
        return type(inputs), inputs.workers(2)

    assert workers() == (CachedInputs, 0)  # every epoch reads features: no loader processes
    assert workers(feature_cache="off") == (RunInputs, 2)


def test_fill_batch_is_the_setting_or_sized_from_the_prefix_activation_on_the_cpu():
    from thaw.caching.memory import fill_batch_size

    cpu = torch.device("cpu")
    conv1_64px = 64 * 32 * 32 * 4  # resnet18's largest prefix output per sample at 64 px
    assert fill_batch_size(Settings(), cpu, conv1_64px, 8) == 32  # 8 MiB of it
    assert fill_batch_size(Settings(), cpu, 64 * 112 * 112 * 4, 32) == 32  # the training batch
    assert fill_batch_size(Settings(), cpu, 16, 32) == 1024
    assert fill_batch_size(Settings(cache_fill_batch_size=7), cpu, conv1_64px, 32) == 7


def test_a_cancel_during_the_fill_stops_the_run_before_its_first_step(tmp_path):
    """A stop asked for while the fill runs ends the fill at the next fill batch; the run
    then stops before any step, as it would between steps."""
    body = {**RESNET, "dataset": {"synthetic": {"num_classes": 3, "num_examples": 30}}}
    body["schedule"] = []
    conv1 = _Conv1Samples()
    reporter = Recorder(stop_at=2)
    handle = torch.nn.modules.module.register_module_forward_hook(conv1)
    try:
        result = train(
            _spec(body, epochs=1),
            tmp_path / "run",
            _settings(tmp_path, cache_fill_batch_size=4),
            reporter,
        )
    finally:
        handle.remove()
    assert result.status == "cancelled"
    assert result.step == 0
    # The first fill batch of 4 (the split's check on 2 samples, then the other 2), then
    # fill batches of 4 until the third stop check says stop; nothing runs the prefix after
    # that (no step, no validation).
    assert conv1.calls[-4:] == [2, 2, 4, 4]
    assert sum(conv1.calls) - sum(conv1.calls[-4:]) <= 1
    assert not reporter.losses
    assert not any("filled the output of" in line for line in reporter.lines)


def test_a_model_whose_output_does_not_follow_from_the_prefix_trains_uncached(
    tmp_path, monkeypatch
):
    """The split's check catches a forward that reads its raw input past the prefix: the
    cache turns itself off before it keeps anything, and the run trains as an uncached one,
    to the bit."""
    from torchvision.models.resnet import ResNet

    plain_forward = ResNet._forward_impl

    def reads_the_input_again(self: ResNet, x: torch.Tensor) -> torch.Tensor:
        return plain_forward(self, x) + x.mean()

    monkeypatch.setattr(ResNet, "_forward_impl", reads_the_input_again)
    body = {**RESNET, "schedule": []}
    runs = {}
    for cache in ("auto", "off"):
        reporter = Recorder()
        train(
            _spec(body, epochs=2, feature_cache=cache),
            tmp_path / cache,
            _settings(tmp_path),
            reporter,
        )
        runs[cache] = reporter
    warned = [line for line in runs["auto"].lines if "differs from its full forward" in line]
    assert warned == [
        "feature cache: the model's output from the cached output of layer4 differs from its "
        "full forward pass, so the cache is off for this run"
    ]
    assert runs["auto"].losses == runs["off"].losses
    assert runs["auto"].val == runs["off"].val
