"""Errors raised by checkpoint storage."""

from __future__ import annotations

from thaw.errors import ThawError


class CheckpointError(ThawError):
    """Base of every checkpoint storage error."""

    status = 500
    code = "checkpoint_error"

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class CheckpointNotFound(CheckpointError):
    """The run has no checkpoint (or no file) by that name."""

    status = 404
    code = "checkpoint_not_found"


class InvalidCheckpointName(CheckpointError):
    """A checkpoint or file name that is not one of the accepted forms."""

    status = 400
    code = "invalid_checkpoint_name"


class CorruptCheckpoint(CheckpointError):
    """Stored checkpoint data that cannot be read back as written."""

    status = 500
    code = "checkpoint_corrupt"

    @property
    def detail(self) -> str:
        return "a stored checkpoint is unreadable"


class FencedOut(CheckpointError):
    """A newer claim of the run holds it: this writer's commit is refused, unseen."""

    status = 409
    code = "lease_lost"
