"""Errors Thaw raises on purpose. Each class carries its HTTP status and a stable code, so
the API answers every one as problem+json and the CLI as one line, with no table between."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

Loc = tuple[str | int, ...]


class ThawError(Exception):
    """Base of every error Thaw raises on purpose. Every subclass sets ``status`` and
    ``code`` itself (a test walks them all)."""

    status: ClassVar[int] = 500
    code: str = "thaw_error"
    title: ClassVar[str | None] = None

    @property
    def detail(self) -> str:
        """What the caller is told; a server-side fault keeps its internals to the log."""
        return str(self)

    def problem_fields(self) -> dict[str, Any]:
        """Extra members of the problem document beside type, title, status, detail, code."""
        return {}

    def headers(self) -> dict[str, str]:
        """Response headers that go with the problem (``Retry-After`` for a quota)."""
        return {}


class SpecError(ThawError):
    """A job spec that is well formed but cannot run: names the field and the fix."""

    status = 422
    code = "invalid_spec"
    title = "Invalid request"

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

    def field_error(self) -> dict[str, Any]:
        return {"loc": self.path, "message": self.message, "hint": self.hint, "closest": []}

    def problem_fields(self) -> dict[str, Any]:
        return {"errors": [self.field_error()]}


class SelectorError(SpecError):
    """A selector that is malformed or matches nothing."""

    status = 422
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

    def field_error(self) -> dict[str, Any]:
        return {**super().field_error(), "closest": list(self.closest)}


class ModelError(SpecError):
    """The base model cannot be built or its weights do not fit it."""

    status = 422
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


class InvalidInput(ThawError):
    """A request or spec that fails its schema: one entry per field, each with the fix."""

    status = 422
    code = "invalid_request"
    title = "Invalid request"

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__(summarize(errors))

    @classmethod
    def from_validation(
        cls, errors: Sequence[Mapping[str, Any]], closest: Closest | None = None
    ) -> InvalidInput:
        """From pydantic's ``errors()``: a JSON path per field, the request part dropped.
        ``closest`` names the valid fields an unknown one is probably a misspelling of."""
        return cls([_field_error(error, closest) for error in errors])

    def problem_fields(self) -> dict[str, Any]:
        return {"errors": self.errors}


Closest = Callable[[Sequence[str | int], str], list[str]]


def _field_error(error: Mapping[str, Any], closest: Closest | None) -> dict[str, Any]:
    loc = list(error.get("loc", ()))
    if loc and loc[0] in _REQUEST_PARTS:
        loc = loc[1:]
    kind = error.get("type", "")
    message = _VALUE_ERROR.sub("", str(error.get("msg", "invalid value")))
    hint = _HINTS.get(kind)
    near: list[str] = []
    if kind == "extra_forbidden" and closest is not None and loc and isinstance(loc[-1], str):
        near = closest(loc[:-1], loc[-1])
        if near:
            message = f"is not a field here; did you mean {near[0]!r}?"
            hint = f"rename it to {near[0]!r}; an unknown field is never ignored"
    return {"loc": format_loc(clean_loc(loc)), "message": message, "hint": hint, "closest": near}


_REQUEST_PARTS = frozenset({"body", "query", "path", "header"})
_UNION_TAGS = frozenset({"event", "gradual", "fine_tune"})
_CLASS_TAG = re.compile(r"^[A-Z]\w*$|\[")
_VALUE_ERROR = re.compile(r"^(Value|Assertion) error, ")
_HINTS = {
    "extra_forbidden": "remove this field; it is not part of the job spec",
    "missing": "add this field",
    "json_invalid": "send a valid JSON document",
    "int_type": "send a JSON integer such as 3, without quotes",
    "bool_type": "send true or false, without quotes",
}


def clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    """A pydantic location without the request part and union tags: ``freeze.rules[0].match``."""
    parts = list(loc)
    if parts and parts[0] in _REQUEST_PARTS:
        parts = parts[1:]
    out: list[str | int] = []
    for part in parts:
        if isinstance(part, str) and _CLASS_TAG.search(part):
            continue
        in_schedule = len(out) >= 2 and isinstance(out[-1], int) and out[-2] == "schedule"
        if isinstance(part, str) and part in _UNION_TAGS and in_schedule:
            continue
        out.append(part)
    return out


def summarize(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line for a list of field errors: the first one, and how many more."""
    first = errors[0]
    text = f"{first['loc'] or 'request body'}: {first['message']}"
    if first.get("hint"):
        text += f" ({first['hint']})"
    if len(errors) > 1:
        text += f"; and {len(errors) - 1} more error(s), see 'errors'"
    return text
