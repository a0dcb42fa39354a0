"""Two hand-written fine-tuning loops in plain PyTorch, as the feature-cache bench times them.

- ``naive``: what most people write. torchvision ``ImageFolder``, the frozen parameters
  with ``requires_grad=False`` and their blocks in eval mode, the whole model run on every
  batch of every epoch, the images decoded every epoch.
- ``expert``: what someone who knows the backbone is frozen writes. The images are decoded
  once and the frozen backbone (eval mode, ``torch.no_grad``) runs once over them; the head
  (``fc``, or ``layer4`` + ``fc`` on the output of ``layer3``) trains on the cached tensor.

Both: resnet18 (random init), a seeded 80/20 split, AdamW at 1e-3, validation every epoch,
the model saved once at the end. Run as a script it prints one JSON line: seconds (end to
end: data, extraction, training, validation, save) and the final validation accuracy.

    python bench/hand_loops.py expert --data DIR --trains fc --epochs 5 --out model.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PREFIX = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")


def split(folder: Path, image_size: int, seed: int) -> tuple[Subset, Subset, int]:
    """The image folder's training and validation parts (80/20, seeded) and its classes."""
    pipeline = transforms.Compose(
        [
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    images = torchvision.datasets.ImageFolder(str(folder), transform=pipeline)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(0.8 * len(images))
    return Subset(images, order[:cut]), Subset(images, order[cut:]), len(images.classes)


def naive(
    folder: Path, trains: str, epochs: int, batch_size: int, image_size: int, out: Path
) -> float:
    """Validation accuracy after ``epochs`` of the whole model over freshly decoded images."""
    torch.manual_seed(0)
    train_set, val_set, classes = split(folder, image_size, seed=0)
    model = torchvision.models.resnet18(num_classes=classes)
    trainable = ("fc",) if trains == "fc" else ("layer4", "fc")
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trainable)
    frozen = [getattr(model, name) for name in PREFIX + (("layer4",) if trains == "fc" else ())]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=batch_size)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        for block in frozen:
            block.eval()
        for x, y in train_loader:
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        right = 0
        with torch.no_grad():
            for x, y in val_loader:
                right += int((model(x).argmax(1) == y).sum())
        accuracy = right / len(val_set)
    torch.save(model.state_dict(), out)
    return accuracy


def expert(
    folder: Path, trains: str, epochs: int, batch_size: int, image_size: int, out: Path
) -> float:
    """Validation accuracy after ``epochs`` of the head over features computed once."""
    torch.manual_seed(0)
    train_set, val_set, classes = split(folder, image_size, seed=0)
    model = torchvision.models.resnet18(num_classes=classes)
    cut = PREFIX + (("layer4", "avgpool") if trains == "fc" else ())
    backbone = nn.Sequential(*(getattr(model, name) for name in cut)).eval()
    if trains == "fc":
        head: nn.Module = nn.Sequential(nn.Flatten(), model.fc)
    else:
        head = nn.Sequential(model.layer4, model.avgpool, nn.Flatten(), model.fc)
    backbone.requires_grad_(False)

    def features(images: Subset) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        with torch.no_grad():
            for x, y in DataLoader(images, batch_size=256):
                xs.append(backbone(x))
                ys.append(y)
        return torch.cat(xs), torch.cat(ys)

    train_x, train_y = features(train_set)
    val_x, val_y = features(val_set)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    shuffle = torch.Generator().manual_seed(0)
    accuracy = 0.0
    for _ in range(epochs):
        head.train()
        order = torch.randperm(len(train_x), generator=shuffle)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(head(train_x[batch]), train_y[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        head.eval()
        with torch.no_grad():
            right = sum(
                int((head(val_x[i : i + 256]).argmax(1) == val_y[i : i + 256]).sum())
                for i in range(0, len(val_x), 256)
            )
        accuracy = right / len(val_x)
    torch.save(model.state_dict(), out)
    return accuracy


LOOPS = {"naive": naive, "expert": expert}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loop", choices=sorted(LOOPS))
    parser.add_argument("--data", type=Path, required=True, help="image folder, class subfolders")
    parser.add_argument("--trains", choices=("fc", "layer4"), default="fc",
                        help="fc: head only; layer4: layer4 and fc")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True, help="the saved state dict")
    args = parser.parse_args()
    start = time.perf_counter()
    accuracy = LOOPS[args.loop](
        args.data, args.trains, args.epochs, args.batch_size, args.image_size, args.out
    )
    seconds = time.perf_counter() - start
    print(json.dumps({"loop": args.loop, "seconds": seconds, "val_accuracy": accuracy}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
