"""Where models come from: local folders only (no hub from the API), safetensors only,
and hostile names answered with 422s that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from zoo_models import HF_VIT_FOLDER, TIMM_VIT_FOLDER, write_hf_vit, write_timm_vit

from thaw.errors import ModelError
from thaw.models import build_model
from thaw.models.registry import library_config
from thaw.settings import Settings
from thaw.spec import BaseModelRef, JobSpec


@pytest.fixture(scope="module")
def models_dir(module_tmp_path: Path) -> Path:
    root = module_tmp_path
    write_hf_vit(root)
    write_timm_vit(root)
    pickled = root / "pickled-vit"
    pickled.mkdir()
    (pickled / "config.json").write_text((root / HF_VIT_FOLDER / "config.json").read_text())
    from safetensors.torch import load_file

    state = load_file(str(root / HF_VIT_FOLDER / "model.safetensors"))
    torch.save(state, pickled / "pytorch_model.bin")
    return root


def _build(models_dir: Path, meta: bool = True, **ref) -> object:
    settings = Settings(models_dir=models_dir, **ref.pop("settings", {}))
    return build_model(BaseModelRef(**ref), 4, settings, meta=meta, classes=list("abcd"))


def _error(models_dir: Path, **ref) -> ModelError:
    with pytest.raises(ModelError) as caught:
        _build(models_dir, **ref)
    return caught.value


def test_hub_ids_are_refused_without_the_setting(models_dir: Path) -> None:
    err = _error(models_dir, source="huggingface", name="google/vit-base-patch16-224")
    assert err.path == "base_model.name"
    assert err.message == (
        "no Hugging Face model folder 'google/vit-base-patch16-224' under THAW_MODELS_DIR"
    )
    assert "place the model folder" in err.hint


def test_validation_never_downloads_even_when_the_hub_is_allowed(models_dir: Path) -> None:
    err = _error(
        models_dir,
        source="huggingface",
        name="no-such-org/no-such-model",
        settings={"allow_hub_downloads": True},
    )
    assert err.message == (
        "the config of hub model 'no-such-org/no-such-model' is not on this server yet"
    )
    err = _error(models_dir, source="timm", name="resnet18", weights="pretrained")
    assert err.path == "base_model.weights"
    assert "THAW_ALLOW_HUB_DOWNLOADS" in err.hint


def test_pickle_weights_are_refused_unless_allowed(models_dir: Path) -> None:
    err = _error(models_dir, source="huggingface", name="pickled-vit")
    assert err.path == "base_model.name"
    assert err.message == (
        "pickled-vit/pytorch_model.bin is a pickle file; Thaw loads model.safetensors only"
    )
    assert err.hint.startswith("convert it to safetensors")
    allowed = {"allow_pickle_weights": True}
    built = _build(
        models_dir, meta=False, source="huggingface", name="pickled-vit", settings=allowed
    )
    base = torch.load(models_dir / "pickled-vit" / "pytorch_model.bin", weights_only=True)
    state = built.model.state_dict()
    assert torch.equal(state["vit.embeddings.cls_token"], base["vit.embeddings.cls_token"])


def test_weights_file_must_be_safetensors(models_dir: Path) -> None:
    (models_dir / "r.bin").write_bytes(b"not read")
    err = _error(models_dir, source="timm", name="resnet18", weights_file="r.bin")
    assert err.path == "base_model.weights_file"
    assert err.message == "'r.bin' is not a .safetensors file; Thaw loads safetensors only"


def test_huggingface_image_folder_gives_labels_and_processor_inputs(models_dir: Path) -> None:
    built = _build(models_dir, meta=False, source="huggingface", name=HF_VIT_FOLDER)
    assert (built.modality, built.head, built.image_size) == ("image", "classifier", 32)
    assert built.model.config.id2label == dict(enumerate("abcd"))
    assert library_config(built)["id2label"] == {str(i): c for i, c in enumerate("abcd")}


def test_timm_folder_weights_are_loaded_key_by_key(models_dir: Path) -> None:
    from safetensors.torch import load_file

    built = _build(models_dir, meta=False, source="timm", name=TIMM_VIT_FOLDER)
    base = load_file(str(models_dir / TIMM_VIT_FOLDER / "model.safetensors"))
    state = built.model.state_dict()
    assert state["head.weight"].shape == (4, 48)
    assert all(torch.equal(base[k], state[k]) for k in base if not k.startswith("head."))
    assert json.loads((models_dir / TIMM_VIT_FOLDER / "config.json").read_text())["model_args"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "vit\x00tiny"),
        ("name", "a" * 5000),
        ("weights_file", "w\x00.safetensors"),
        ("weights_file", "w" * 5000 + ".safetensors"),
    ],
)
def test_nul_bytes_and_long_values_are_refused_by_the_spec(field: str, value: str) -> None:
    from pydantic import ValidationError

    base = {"source": "huggingface", "name": "m", field: value}
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"base_model": base})
    assert [e["loc"] for e in caught.value.errors()] == [("base_model", field)]
