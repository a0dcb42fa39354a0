"""Errors of evaluations, predictions and exports, each with its status and code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thaw.errors import ThawError


class ClassMismatch(ThawError):
    """A dataset with classes the checkpoint was not trained on."""

    status = 422
    code = "class_mismatch"

    def __init__(self, unknown: Sequence[str], checkpoint_classes: Sequence[str]):
        self.unknown = list(unknown)
        self.checkpoint_classes = list(checkpoint_classes)
        shown = ", ".join(repr(c) for c in self.unknown[:20])
        more = f" and {len(self.unknown) - 20} more" if len(self.unknown) > 20 else ""
        super().__init__(
            f"dataset: classes {shown}{more} are not among the checkpoint's "
            f"{len(self.checkpoint_classes)} classes; evaluate on a dataset with the classes "
            "the job trained on"
        )

    def problem_fields(self) -> dict[str, Any]:
        return {
            "unknown_classes": self.unknown,
            "checkpoint_classes": self.checkpoint_classes[:1000],
        }


class ExportUnavailable(ThawError):
    """The worker lacks the ONNX packages."""

    status = 501
    code = "export_unavailable"


class ExportMismatch(ThawError):
    """onnxruntime's outputs differ from PyTorch's beyond the tolerance."""

    status = 500
    code = "export_mismatch"

    @property
    def detail(self) -> str:
        return str(self)


def check_classes(dataset_classes: Sequence[str], checkpoint_classes: Sequence[str]) -> None:
    """Every class of the dataset must be one the checkpoint predicts (a test set may lack
    some of them)."""
    known = set(checkpoint_classes)
    unknown = [c for c in dataset_classes if c not in known]
    if unknown:
        raise ClassMismatch(unknown, checkpoint_classes)
