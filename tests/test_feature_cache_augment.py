"""hyperparameters.augment reaches the training images (never the validation ones)."""

from __future__ import annotations

import torch
from digits import write_digits_folder

from thaw.data import build_datasets


def test_standard_and_flip_augment_training_images_only(tmp_path):
    root = write_digits_folder(tmp_path / "digits", per_class=2)
    plain = build_datasets(root, modality="image", image_size=32, validation=0.5)
    for mode in ("flip", "standard"):
        data = build_datasets(root, modality="image", image_size=32, validation=0.5, augment=mode)
        torch.manual_seed(0)
        views = [data.train[0][0] for _ in range(12)]
        assert all(v.shape == (3, 32, 32) for v in views)
        assert any(not torch.equal(v, plain.train[0][0]) for v in views), mode
        assert torch.equal(data.val[0][0], plain.val[0][0])
