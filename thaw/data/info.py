"""What inspection reports about a dataset, and example counts a planner needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

DatasetFormat = Literal["image_folder", "csv", "jsonl", "synthetic"]
Modality = Literal["image", "text"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a validated dataset.

    ``class_counts`` and ``num_examples`` cover every example, including an explicit
    ``val/`` folder; ``val_class_counts`` is the part that lives in ``val/``.
    """

    format: DatasetFormat
    classes: list[str]
    class_counts: dict[str, int]
    num_examples: int
    has_explicit_val: bool = False
    val_class_counts: dict[str, int] = field(default_factory=dict)

    @property
    def modality(self) -> Modality:
        return "image" if self.format == "image_folder" else "text"

    @property
    def train_class_counts(self) -> dict[str, int]:
        return {c: n - self.val_class_counts.get(c, 0) for c, n in self.class_counts.items()}


@dataclass(frozen=True)
class ExampleCounts:
    train: int
    val: int


def val_count(n: int, fraction: float) -> int:
    """How many of a class's ``n`` examples a stratified split puts in validation."""
    if n < 2:
        return 0
    return min(n - 1, max(1, int(n * fraction + 0.5)))


def count_examples(
    info: DatasetInfo, validation: float | DatasetInfo | None = None
) -> ExampleCounts:
    """Train and validation sizes that ``build_datasets`` will produce, without loading data.

    ``validation``: None uses the ``val/`` folder when there is one, else a 0.2 split; a float
    splits the training part; another ``DatasetInfo`` is a separate validation set.
    """
    train_counts = info.train_class_counts
    if isinstance(validation, DatasetInfo):
        return ExampleCounts(sum(train_counts.values()), validation.num_examples)
    if validation is None:
        if info.has_explicit_val:
            return ExampleCounts(sum(train_counts.values()), sum(info.val_class_counts.values()))
        validation = 0.2
    val = sum(val_count(n, validation) for n in train_counts.values())
    return ExampleCounts(sum(train_counts.values()) - val, val)


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Sorted class names: numerically when every name is an integer, else as strings."""
    unique = set(labels)
    if unique and all(_is_int(x) for x in unique):
        return sorted(unique, key=lambda x: (int(x), x))
    return sorted(unique)


def counts_in_order(classes: list[str], counts: Mapping[str, int]) -> dict[str, int]:
    return {c: counts.get(c, 0) for c in classes}


def _is_int(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()


def synthetic_class_names(num_classes: int) -> list[str]:
    return [f"class_{i}" for i in range(num_classes)]


def synthetic_info(num_classes: int, num_examples: int) -> DatasetInfo:
    """Metadata of a synthetic dataset: balanced classes, the first ones one larger."""
    classes = synthetic_class_names(num_classes)
    base, extra = divmod(num_examples, num_classes)
    counts = {name: base + (1 if i < extra else 0) for i, name in enumerate(classes)}
    return DatasetInfo(
        format="synthetic", classes=classes, class_counts=counts, num_examples=num_examples
    )
