"""Errors the engine raises; the API maps them to problem+json, the CLI to one line."""

from __future__ import annotations

from collections.abc import Sequence

Loc = tuple[str | int, ...]


class ThawError(Exception):
    """Base of every error Thaw raises on purpose."""

    code = "thaw_error"


class SpecError(ThawError):
    """A job spec that is well formed but cannot run: names the field and the fix."""

    code = "invalid_spec"

    def __init__(self, loc: Sequence[str | int], message: str, hint: str | None = None):
        self.loc: Loc = tuple(loc)
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    @property
    def path(self) -> str:
        return format_loc(self.loc)

    def one_line(self) -> str:
        text = f"{self.path}: {self.message}" if self.loc else self.message
        return f"{text} ({self.hint})" if self.hint else text


class SelectorError(SpecError):
    """A selector that is malformed or matches nothing."""

    code = "invalid_selector"

    def __init__(
        self,
        loc: Sequence[str | int],
        message: str,
        hint: str | None = None,
        closest: Sequence[str] = (),
    ):
        self.closest = list(closest)
        super().__init__(loc, message, hint)


class ModelError(SpecError):
    """The base model cannot be built or its weights do not fit it."""

    code = "invalid_model"


def format_loc(loc: Sequence[str | int]) -> str:
    """Render a location as a JSON path: ``freeze.rules[1].match``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
