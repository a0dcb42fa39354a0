"""Errors raised by checkpoint storage."""

from __future__ import annotations

from thaw.errors import ThawError


class CheckpointError(ThawError):
    """Base of every checkpoint storage error."""

    code = "checkpoint_error"

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class CheckpointNotFound(CheckpointError):
    """The run has no checkpoint (or no file) by that name."""

    code = "checkpoint_not_found"


class InvalidCheckpointName(CheckpointError):
    """A checkpoint or file name that is not one of the accepted forms."""

    code = "invalid_checkpoint_name"


class CorruptCheckpoint(CheckpointError):
    """Stored checkpoint data that cannot be read back as written."""

    code = "checkpoint_corrupt"


class UnsafePickle(CheckpointError):
    """A pickle that holds more than tensors and plain containers."""

    code = "unsafe_pickle"
