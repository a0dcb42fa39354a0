"""Reading and checking text classification rows from CSV or JSON Lines files."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from thaw.data.errors import DatasetError
from thaw.data.info import DatasetInfo, counts_in_order, sort_labels
from thaw.settings import DEFAULTS

TextFormat = Literal["csv", "jsonl"]
_SHOWN_PROBLEMS = 5
_KEPT_LINES = 100


@dataclass(frozen=True)
class TextRows:
    texts: list[str]
    labels: list[str]

    def info(self, format: TextFormat) -> DatasetInfo:
        counts: dict[str, int] = {}
        for label in self.labels:
            counts[label] = counts.get(label, 0) + 1
        classes = sort_labels(counts)
        return DatasetInfo(
            format=format,
            classes=classes,
            class_counts=counts_in_order(classes, counts),
            num_examples=len(self.labels),
        )


@dataclass
class _Problems:
    codes: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, line: int, code: str, note: str) -> None:
        self.total += 1
        if len(self.lines) < _KEPT_LINES:
            self.codes.append(code)
            self.lines.append(line)
            self.notes.append(f"line {line}: {note}")


def read_text_rows(
    path: str | os.PathLike[str],
    format: str,
    *,
    max_classes: int | None = None,
    shown_as: str | None = None,
) -> TextRows:
    """Every row's text and label (as a string); raises DatasetError naming bad lines, or
    at the first label past ``max_classes`` distinct ones (the built-in THAW_MAX_CLASSES
    by default).
    Errors call the file ``shown_as`` (the name the user gave it), or else by its name."""
    file = Path(path)
    name = shown_as or file.name
    if max_classes is None:
        max_classes = DEFAULTS.max_classes
    if format not in ("csv", "jsonl"):
        raise DatasetError(
            f"text format '{format}' is not supported; use 'csv' or 'jsonl'", code="bad_format"
        )
    if not file.is_file():
        raise DatasetError(
            f"text dataset '{name}' does not exist; give a .csv or .jsonl file",
            code="not_found",
        )
    problems = _Problems()
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    try:
        with open(file, encoding="utf-8-sig", newline="") as f:
            source = _csv_rows(f, name) if format == "csv" else _jsonl_rows(f)
            for line, structural, text, label in source:
                note = structural or _check_row(text, label)
                if note is None:
                    texts.append(str(text))
                    labels.append(_label_text(label))
                    if labels[-1] not in seen:
                        seen.add(labels[-1])
                        if len(seen) > max_classes:
                            raise too_many_classes(name, max_classes, line)
                else:
                    problems.add(line, *note)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"'{name}' is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8",
            code="bad_format",
        ) from exc
    if problems.total:
        shown = "; ".join(problems.notes[:_SHOWN_PROBLEMS])
        more = problems.total - min(problems.total, _SHOWN_PROBLEMS)
        tail = f" (and {more} more)" if more else ""
        raise DatasetError(
            f"'{name}' has {problems.total} bad row(s): {shown}{tail}; every row needs "
            "a non-empty 'text' and a 'label' (string or integer)",
            code=problems.codes[0],
            path=name,
            lines=problems.lines,
        )
    if not labels:
        raise DatasetError(
            f"'{name}' holds no rows; add rows with 'text' and 'label'",
            code="empty_dataset",
            path=name,
        )
    if len(seen) < 2:
        raise DatasetError(
            f"a classifier needs at least two labels, '{name}' has only '{labels[0]}'; "
            "add rows of another class",
            code="too_few_classes",
            path=name,
        )
    return TextRows(texts, labels)


def too_many_classes(name: str, limit: int, line: int | None = None) -> DatasetError:
    where = f" (line {line} brings label number {limit + 1})" if line is not None else ""
    return DatasetError(
        f"'{name}' has more than {limit} distinct labels{where}; at most {limit} classes "
        "(THAW_MAX_CLASSES); merge labels or split the dataset",
        code="too_many_classes",
        path=name,
        lines=(line,) if line is not None else (),
    )


def inspect_rows(
    path: str | os.PathLike[str],
    format: str,
    *,
    max_classes: int | None = None,
    shown_as: str | None = None,
) -> DatasetInfo:
    rows = read_text_rows(path, format, max_classes=max_classes, shown_as=shown_as)
    return rows.info("csv" if format == "csv" else "jsonl")


_Note = tuple[str, str]
_Row = tuple[int, _Note | None, object, object]


def _csv_rows(f: Iterator[str], name: str) -> Iterator[_Row]:
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise DatasetError(
            f"'{name}' line 1: the header cannot be read ({exc}); write a header of 'text,label'",
            code="bad_format",
            path=name,
            lines=(1,),
        ) from exc
    columns = [c.strip() for c in header]
    missing = [c for c in ("text", "label") if c not in columns]
    if missing:
        raise DatasetError(
            f"'{name}' line 1: the header has no {' or '.join(repr(c) for c in missing)} "
            f"column (found: {', '.join(columns) or 'nothing'}); name the columns "
            "'text' and 'label'",
            code="missing_column",
            path=name,
            lines=(1,),
        )
    text_at, label_at = columns.index("text"), columns.index("label")
    width = max(text_at, label_at) + 1
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetError(
                f"'{name}' line {reader.line_num}: {exc}; fix the quoting of that row",
                code="bad_format",
                path=name,
                lines=(reader.line_num,),
            ) from exc
        line, start = start, reader.line_num + 1
        if not row:
            continue
        if len(row) < width:
            note = ("missing_column", f"{len(row)} field(s) but the header has {len(columns)}")
            yield line, note, None, None
            continue
        yield line, None, row[text_at], row[label_at]


def _jsonl_rows(f: Iterator[str]) -> Iterator[_Row]:
    for line, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except RecursionError:
            yield line, ("bad_format", "JSON nested too deeply"), None, None
            continue
        except ValueError:  # invalid JSON, or an integer with too many digits
            yield line, ("bad_format", "not valid JSON"), None, None
            continue
        if not isinstance(obj, dict):
            yield line, ("bad_format", "not a JSON object"), None, None
            continue
        missing = [k for k in ("text", "label") if k not in obj]
        if missing:
            keys = " or ".join(repr(k) for k in missing)
            yield line, ("missing_column", f"no {keys} key"), None, None
            continue
        yield line, None, obj["text"], obj["label"]


def _check_row(text: object, label: object) -> _Note | None:
    if not isinstance(text, str):
        return ("bad_row", "'text' must be a string")
    if not text.strip():
        return ("bad_row", "'text' is empty")
    if isinstance(label, bool) or not isinstance(label, str | int):
        return ("bad_row", "'label' must be a string or an integer")
    if not _label_text(label):
        return ("bad_row", "'label' is empty")
    return None


def _label_text(label: object) -> str:
    return str(label).strip()
