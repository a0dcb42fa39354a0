"""The error every dataset problem raises: a stable code plus a message naming the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thaw.errors import ThawError

_WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):"


class DatasetError(ThawError):
    """A dataset or archive that cannot be used as given.

    ``path`` is the offending file or member (relative to the dataset), ``lines`` the bad
    line numbers of a text file, ``loc`` the job-spec field the dataset came from, if known.
    ``code`` is one of: archive_unsafe_path, archive_link, archive_special_file,
    archive_too_many_members, archive_too_large, archive_duplicate_member, bad_format,
    undecodable_image, unsupported_file, too_few_classes, too_few_examples, missing_column,
    bad_row, unknown_label, empty_dataset, not_found, too_many_classes.
    """

    status = 422
    code = "invalid_dataset"
    title = "Invalid dataset"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        path: str | None = None,
        lines: Sequence[int] = (),
        loc: Sequence[str | int] = (),
    ):
        message = _strip_worker_traceback(message, type(self).__name__)
        if code is not None:
            self.code = code
        self.message = message
        self.path = path
        self.lines = tuple(lines)
        self.loc: tuple[str | int, ...] = tuple(loc)
        super().__init__(message)

    def problem_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"member": self.path} if self.path else {}
        if self.lines:
            fields["lines"] = list(self.lines)
        return fields


class ImageDecodeError(DatasetError):
    """An image file that PIL cannot decode; raised by inspection and while training."""

    status = 422
    code = "undecodable_image"


def _strip_worker_traceback(message: str, type_name: str) -> str:
    # A DataLoader worker re-raises an exception in the main process as
    # ``type(formatted_traceback)``; keep only the original message.
    if _WORKER_TRACEBACK not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    _, sep, original = last.partition(f"{type_name}: ")
    return original if sep else last
