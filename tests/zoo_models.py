"""Tiny timm and Hugging Face image classifiers built and saved locally (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

TIMM_RESNET = "resnet10t"
TIMM_RESNET_FILE = "timm-resnet10t.safetensors"
TIMM_VIT_FOLDER = "tiny-timm-vit"
TIMM_VIT_ARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 48, "depth": 2, "num_heads": 3}
HF_VIT_FOLDER = "tiny-hf-vit"
HF_MEAN = [0.5, 0.4, 0.3]
HF_STD = [0.25, 0.25, 0.25]


def write_timm_resnet(models_dir: Path) -> Path:
    """A timm resnet10t (ImageNet head, pretrained=False) saved as safetensors."""
    import timm

    torch.manual_seed(11)
    model = timm.create_model(TIMM_RESNET, pretrained=False)
    path = models_dir / TIMM_RESNET_FILE
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_timm_vit(models_dir: Path) -> Path:
    """A 2-block timm ViT for 32x32 images in timm's hub layout (config.json + safetensors)."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(12)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TIMM_VIT_ARGS)
    folder = models_dir / TIMM_VIT_FOLDER
    save_for_hf(model, str(folder), safe_serialization="both")
    (folder / "pytorch_model.bin").unlink(missing_ok=True)
    return folder


def write_hf_vit(models_dir: Path) -> Path:
    """A 2-layer Hugging Face ViT for 32x32 images with its image processor config."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(13)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=96,
        num_labels=3,
    )
    folder = models_dir / HF_VIT_FOLDER
    ViTForImageClassification(config).save_pretrained(folder, safe_serialization=True)
    processor = ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=HF_MEAN, image_std=HF_STD
    )
    processor.save_pretrained(folder)
    return folder
