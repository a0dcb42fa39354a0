"""LoRA as a freeze method: adapters on the layers targets select, the base bit-identical,
checkpoints with a PEFT adapter holding every trained tensor and a merged model."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from support import bits_equal, minilm_dir

import thaw
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training import train
from thaw.training.reporter import NullReporter

QV_LAYERS_4_5 = r"re:bert\.encoder\.layer\.[45]\.attention\.self\.(query|value)"
THAWED_NORM = "bert.encoder.layer.5.output.LayerNorm"


class Recorder(NullReporter):
    def __init__(self, stop_at: int | None = None):
        self.entries: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.steps = 0
        self.stop_at = stop_at

    def layers(self, epoch: int, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def log(self, level: str, message: str) -> None:
        self.lines.append(message)

    def should_stop(self) -> bool:
        self.steps += 1
        return self.stop_at is not None and self.steps > self.stop_at


def _settings(tmp: Path) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        datasets_dir=tmp / "datasets",
        models_dir=tmp / "models",
        progress_interval_seconds=0,
    )


def _text_csv(tmp: Path, rows: int = 24) -> str:
    folder = tmp / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    words = ["good film", "bad plot", "fine acting", "dull story", "great cast", "poor sound"]
    with (folder / "reviews.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            writer.writerow([f"{words[i % 6]} number {i}", "pos" if i % 2 == 0 else "neg"])
    return "reviews.csv"


def _minilm_spec(tmp: Path, **hp: Any) -> JobSpec:
    shutil.copytree(minilm_dir(), tmp / "models" / "minilm", dirs_exist_ok=True)
    return JobSpec.model_validate(
        {
            "base_model": {"source": "huggingface", "name": "minilm"},
            "dataset": {
                "path": _text_csv(tmp),
                "format": "csv",
                "validation": {"split": 0.25},
            },
            "freeze": {
                "method": "lora",
                "adapter": {"r": 4, "alpha": 8, "targets": [QV_LAYERS_4_5]},
                "rules": [{"match": THAWED_NORM, "trainable": True}],
            },
            "hyperparameters": {
                "epochs": 2,
                "batch_size": 6,
                "max_length": 16,
                "lr": 5e-3,
                "seed": 3,
                **hp,
            },
        }
    )


def _base_state(tmp: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tmp / "models" / "minilm")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _tokens() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(1000, 5000, (3, 12), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_minilm_lora_keeps_the_base_and_writes_adapter_and_merged_checkpoints(tmp_path):
    spec = _minilm_spec(tmp_path)
    settings = _settings(tmp_path)
    run = tmp_path / "run"
    reporter = Recorder()
    result = train(spec, run, settings, reporter)
    assert result.status == "succeeded"
    last = run / "checkpoints" / "last"
    merged = load_file(str(last / "model.safetensors"))
    base = _base_state(tmp_path)
    assert merged.keys() == base.keys()

    targets = [
        f"bert.encoder.layer.{i}.attention.self.{kind}"
        for i in (4, 5)
        for kind in ("query", "value")
    ]
    trained = {f"{t}.weight" for t in targets}
    trained |= {f"{THAWED_NORM}.weight", f"{THAWED_NORM}.bias"}
    trained |= {k for k in base if k.startswith("classifier.")}
    # Every base tensor that no adapter merges into and no rule thawed is bit-identical.
    for key, value in base.items():
        if key not in trained:
            assert bits_equal(merged[key], value), key
    for key in trained - {k for k in base if k.startswith("classifier.")}:
        assert not bits_equal(merged[key], base[key]), f"{key} did not train"

    # The adapter holds every trainable tensor under PEFT's keys, and nothing frozen.
    adapter = load_file(str(last / "adapter" / "adapter_model.safetensors"))
    prefix = "base_model.model."
    expected = {f"{prefix}{t}.lora_{ab}.weight" for t in targets for ab in "AB"}
    expected |= {f"{prefix}{THAWED_NORM}.weight", f"{prefix}{THAWED_NORM}.bias"}
    expected |= {f"{prefix}classifier.weight", f"{prefix}classifier.bias"}
    assert set(adapter) == expected
    config = json.loads((last / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == targets
    assert sorted(config["modules_to_save"]) == [THAWED_NORM, "classifier"]

    # PeftModel.from_pretrained round trip: the base plus the adapter is the merged model.
    with_adapter = thaw.load_model(last / "adapter", settings=settings)
    from peft import PeftModel

    assert isinstance(with_adapter, PeftModel)
    state = with_adapter.state_dict()
    for t in targets:
        key = f"base_model.model.{t}.base_layer.weight"
        assert bits_equal(state[key], base[f"{t}.weight"]), key
        for ab in "AB":
            loaded = state[f"base_model.model.{t}.lora_{ab}.default.weight"]
            assert bits_equal(loaded, adapter[f"{prefix}{t}.lora_{ab}.weight"])
    plain = thaw.load_model(last)
    with torch.no_grad():
        a = with_adapter(**_tokens()).logits
        b = plain(**_tokens()).logits
        unmerged = with_adapter.merge_and_unload().state_dict()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert unmerged.keys() == merged.keys()
    for key, value in unmerged.items():
        torch.testing.assert_close(value, merged[key], atol=1e-6, rtol=0)

    # The merged folder loads with no PEFT at all, as Hugging Face's own.
    from transformers import AutoModelForSequenceClassification

    hf = AutoModelForSequenceClassification.from_pretrained(last).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(**_tokens()).logits, b, atol=0, rtol=0)

    # Layer status: adapters per layer, the base of adapter layers never trains.
    rows = {row["name"]: row for row in reporter.entries[-1]["layers"]}
    query = rows["bert.encoder.layer.4.attention.self.query"]
    assert query["adapter"] == {"r": 4, "params": 4 * 384 * 2, "trainable": True}
    assert query["base_trains"] is False and query["trainable"] == "partial"
    assert query["changed"] is True
    assert rows[THAWED_NORM]["adapter"] is None and rows[THAWED_NORM]["base_trains"] is True
    assert rows["bert.encoder.layer.3.attention.self.query"]["adapter"] is None
    assert rows["bert.encoder.layer.3.attention.self.query"]["changed"] is False
    assert reporter.entries[-1]["trainable_params"] == 4 * 3072 + 768 + 384 * 2 + 2
    # The feature cache engages below the first adapter-carrying layer.
    assert any("trains past bert.encoder.layer.3" in line for line in reporter.lines)


VIT_TARGETS = r"re:vit\.layers\.\d\.attention\.(q|v)_proj"


def _vit_spec(tmp: Path, **hp: Any) -> JobSpec:
    from zoo_models import HF_VIT_FOLDER, write_hf_vit

    if not (tmp / "models" / HF_VIT_FOLDER).is_dir():
        write_hf_vit(tmp / "models")
    return JobSpec.model_validate(
        {
            "base_model": {"source": "huggingface", "name": HF_VIT_FOLDER},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 24}},
            "freeze": {
                "method": "lora",
                "default": "frozen",
                "adapter": {"r": 2, "alpha": 4, "targets": [VIT_TARGETS]},
            },
            "schedule": [{"preset": "gradual", "every_epochs": 1}],
            "hyperparameters": {
                "epochs": 4,
                "batch_size": 8,
                "image_size": 32,
                "lr": 1e-2,
                "feature_cache": "off",
                **hp,
            },
            "checkpointing": {"keep_last": 4},
        }
    )


def _adapter_of(run: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / name / "adapter" / "adapter_model.safetensors"))


def test_vit_gradual_schedule_thaws_adapter_groups_one_by_one(tmp_path):
    from zoo_models import HF_VIT_FOLDER

    spec = _vit_spec(tmp_path)
    settings = _settings(tmp_path)
    table = thaw_plan(spec, settings)
    layer = "vit.layers.{}.attention.q_proj"
    trains = [{r["name"] for r in e["layers"] if r["trainable_params"]} for e in table["epochs"]]
    assert trains[0] == {"classifier"}
    assert trains[1] == {"classifier", "vit.layernorm"}
    assert trains[2] - trains[1] == {layer.format(1), layer.format(1).replace("q_proj", "v_proj")}
    assert trains[3] - trains[2] == {layer.format(0), layer.format(0).replace("q_proj", "v_proj")}
    assert table["adapter"]["targets"] == [
        layer.format(i).replace("q_", kind) for i in (0, 1) for kind in ("q_", "v_")
    ]

    run = tmp_path / "run"
    assert train(spec, run, settings, Recorder()).status == "succeeded"
    prefix = "base_model.model."
    one = prefix + layer.format(1)
    zero = prefix + layer.format(0)
    # Adapters of layer 1 thaw at epoch 3: the epoch-2 checkpoint holds them as initialized
    # (lora_B zero); layer 0's thaw at epoch 4, so epochs 1 to 3 agree bit for bit.
    e1, e2, e3, e4 = (_adapter_of(run, f"epoch-{k}") for k in (1, 2, 3, 4))
    assert bits_equal(e1[f"{one}.lora_A.weight"], e2[f"{one}.lora_A.weight"])
    assert not e2[f"{one}.lora_B.weight"].any()
    assert e3[f"{one}.lora_B.weight"].any()
    assert bits_equal(e1[f"{zero}.lora_A.weight"], e3[f"{zero}.lora_A.weight"])
    assert not e3[f"{zero}.lora_B.weight"].any() and e4[f"{zero}.lora_B.weight"].any()
    # vit.layernorm trained in full from epoch 2 and is saved whole beside the adapters.
    assert bits_equal(e1[f"{prefix}vit.layernorm.weight"], e2[f"{prefix}vit.layernorm.weight"]) is (
        False
    )

    from transformers import AutoModelForImageClassification

    saved = AutoModelForImageClassification.from_pretrained(tmp_path / "models" / HF_VIT_FOLDER)
    base = saved.state_dict()
    merged = load_file(str(run / "checkpoints" / "last" / "model.safetensors"))
    moved = {"classifier.weight", "classifier.bias", "vit.layernorm.weight", "vit.layernorm.bias"}
    moved |= {f"{t.removeprefix(prefix)}.weight" for t in (one, zero)}
    moved |= {f"{t.removeprefix(prefix).replace('q_proj', 'v_proj')}.weight" for t in (one, zero)}
    for key, value in base.items():
        if key not in moved:
            assert bits_equal(merged[key], value), key


def test_vit_lora_killed_mid_run_resumes_bitwise_equal(tmp_path):
    spec = _vit_spec(tmp_path, epochs=3)
    settings = _settings(tmp_path)
    unbroken = tmp_path / "unbroken"
    train(spec, unbroken, settings, Recorder())
    broken = tmp_path / "broken"
    stopped = train(spec, broken, settings, Recorder(stop_at=7))
    assert stopped.status == "cancelled" and stopped.epoch == 3
    result = train(spec, broken, settings, Recorder())
    assert result.status == "succeeded" and result.resumed_from == 2
    for name in ("model.safetensors", "adapter/adapter_model.safetensors"):
        a = load_file(str(unbroken / "checkpoints" / "last" / name))
        b = load_file(str(broken / "checkpoints" / "last" / name))
        assert a.keys() == b.keys()
        assert all(bits_equal(a[k], b[k]) for k in a), name


def thaw_plan(spec: JobSpec, settings: Settings) -> dict[str, Any]:
    from thaw.submit import plan_spec

    return plan_spec(spec, settings)


def test_resnet18_conv_adapters_in_layer4_on_digits(tmp_path):
    from digits import write_digits_folder
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(7)
    (tmp_path / "models").mkdir()
    base = {k: v.contiguous() for k, v in resnet18().state_dict().items()}
    save_file(base, str(tmp_path / "models" / "resnet18.safetensors"))
    write_digits_folder(tmp_path / "datasets" / "digits", per_class=4)
    spec = JobSpec.model_validate(
        {
            "base_model": {
                "source": "torchvision",
                "name": "resnet18",
                "weights_file": "resnet18.safetensors",
            },
            "dataset": {"path": "digits", "validation": {"split": 0.25}},
            "freeze": {"method": "lora", "adapter": {"r": 4, "targets": ["layer4"]}},
            "hyperparameters": {"epochs": 2, "batch_size": 10, "image_size": 32, "lr": 1e-2},
        }
    )
    settings = _settings(tmp_path)
    table = thaw_plan(spec, settings)
    convs = [t for t in table["adapter"]["targets"]]
    assert convs == [
        "layer4.0.conv1",
        "layer4.0.conv2",
        "layer4.0.downsample.0",
        "layer4.1.conv1",
        "layer4.1.conv2",
    ]
    rows = {r["name"]: r for r in table["epochs"][0]["layers"]}
    assert rows["layer4.0.bn1"]["mode"] == "eval" and rows["layer4.0.bn1"]["adapter"] is None
    assert rows["layer4.0.conv1"]["adapter"]["r"] == 4
    assert [c["engages"] for c in table["feature_cache"]] == [True]
    assert table["feature_cache"][0]["boundary"] == "layer3"

    run = tmp_path / "run"
    reporter = Recorder()
    assert train(spec, run, settings, reporter).status == "succeeded"
    assert any("trains past layer3" in line for line in reporter.lines)
    last = run / "checkpoints" / "last"
    merged = load_file(str(last / "model.safetensors"))
    assert merged.keys() == base.keys()
    moved = {f"{t}.weight" for t in convs} | {"fc.weight", "fc.bias"}
    for key, value in base.items():  # BatchNorm statistics included
        if key not in moved:
            assert bits_equal(merged[key], value), key
    assert all(not bits_equal(merged[k], base[k]) for k in moved - {"fc.weight", "fc.bias"})

    plain = thaw.load_model(last)
    with_adapter = thaw.load_model(last / "adapter", settings=settings)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(with_adapter(images), plain(images), atol=1e-5, rtol=0)


def test_timm_resnet_lora_checkpoint_loads_merged_and_with_its_adapter(tmp_path):
    from zoo_models import TIMM_RESNET, TIMM_RESNET_FILE, write_timm_resnet

    (tmp_path / "models").mkdir()
    write_timm_resnet(tmp_path / "models")
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "timm", "name": TIMM_RESNET, "weights_file": TIMM_RESNET_FILE},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 16}},
            "freeze": {"method": "lora", "adapter": {"r": 2, "targets": ["type:Conv2d"]}},
            "hyperparameters": {"epochs": 1, "batch_size": 8, "image_size": 32, "lr": 1e-2},
        }
    )
    settings = _settings(tmp_path)
    run = tmp_path / "run"
    assert train(spec, run, settings, Recorder()).status == "succeeded"
    last = run / "checkpoints" / "last"
    base = load_file(str(tmp_path / "models" / TIMM_RESNET_FILE))
    merged = load_file(str(last / "model.safetensors"))
    convs = {k for k in base if k.endswith(".weight") and base[k].ndim == 4}
    assert len(convs) > 10
    for key, value in base.items():  # BatchNorm statistics included; the head is replaced
        if key not in convs and not key.startswith("fc."):
            assert bits_equal(merged[key], value), key
    # timm zero-initializes each block's last BatchNorm, so the block's convolutions get no
    # gradient yet: their adapters stay zero and merge to the base weight exactly.
    adapter = load_file(str(last / "adapter" / "adapter_model.safetensors"))
    moved = {k for k in convs if not bits_equal(merged[k], base[k])}
    trained = {
        k for k in convs if adapter[f"base_model.model.{k[: -len('.weight')]}.lora_B.weight"].any()
    }
    assert moved == trained and len(moved) >= 4
    plain = thaw.load_model(last)
    with_adapter = thaw.load_model(last / "adapter", settings=settings)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(with_adapter(images), plain(images), atol=1e-5, rtol=0)
