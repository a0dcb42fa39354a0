"""Selectors: the strings that name parameters in rules, schedule events and param groups.

``layer4`` (a module: all its parameters) or ``fc.weight`` (one parameter);
a glob over names (``*.bias``); ``re:REGEX`` (matched against the whole name);
``type:BatchNorm2d``; ``group:I`` or ``group:START:STOP`` (Python slice rules).

``re:`` patterns run on RE2, whose matching time is linear in the name's length whatever the
pattern, so no selector can stall the process that resolves it.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Sequence

import re2

from thaw.errors import SelectorError
from thaw.freezing.model_index import ModelIndex
from thaw.settings import Settings

_GLOB_CHARS = frozenset("*?[")
_GROUP = re.compile(r"^group:(-?\d*)(?::(-?\d*))?$")


def select(
    index: ModelIndex, selector: str, loc: Sequence[str | int], settings: Settings
) -> list[str]:
    """Parameter names the selector picks, in model order; an error if it picks none.
    ``re:`` patterns compile within ``settings.selector_regex_max_mem``."""
    max_mem = settings.selector_regex_max_mem
    names = _match(index, selector.strip(), loc, max_mem)
    if not names:
        raise SelectorError(
            loc,
            f"selector {selector!r} matches no parameter",
            hint=_whole_name_hint(index, selector.strip(), max_mem)
            or _suggest_hint(index, selector),
            closest=closest_names(index, selector),
        )
    order = {name: i for i, name in enumerate(index.params)}
    return sorted(names, key=order.__getitem__)


def _match(index: ModelIndex, selector: str, loc: Sequence[str | int], max_mem: int) -> set[str]:
    if selector.startswith("re:"):
        pattern = _compile_regex(selector[3:], loc, max_mem)
        return _by_names(index, pattern.fullmatch)
    if selector.startswith("type:"):
        return _by_type(index, selector[5:], loc)
    if selector.startswith("group:"):
        return _by_group(index, selector, loc)
    if _GLOB_CHARS & set(selector):
        pattern = _compile_glob(selector, loc)
        return _by_names(index, pattern.fullmatch)
    if selector in index.params:
        return {selector}
    return set(index.module_params.get(selector, ()))


def _by_names(index: ModelIndex, matches: Callable[[str], object]) -> set[str]:
    found = {name for name in index.params if matches(name)}
    for module, params in index.module_params.items():
        if matches(module):
            found.update(params)
    return found


def _by_type(index: ModelIndex, type_name: str, loc: Sequence[str | int]) -> set[str]:
    modules = [m for m, t in index.module_types.items() if t == type_name]
    if not modules:
        known = sorted(set(index.module_types.values()))
        raise SelectorError(
            loc,
            f"the model has no module of type {type_name!r}",
            hint=f"types in this model: {', '.join(known[:12])}",
            closest=difflib.get_close_matches(type_name, known, n=5, cutoff=0.3),
        )
    return {p for m in modules for p in index.module_params.get(m, ())}


def _by_group(index: ModelIndex, selector: str, loc: Sequence[str | int]) -> set[str]:
    match = _GROUP.match(selector)
    count = len(index.groups)
    valid = f"the model has {count} groups, 0..{count - 1}"
    if match is None or (match.group(2) is None and match.group(1) == ""):
        raise SelectorError(
            loc, f"bad group selector {selector!r}", f"use group:I or group:A:B; {valid}"
        )
    start, stop = match.group(1), match.group(2)
    if stop is None:
        i = int(start)
        if not -count <= i < count:
            raise SelectorError(loc, f"group {i} is out of range", valid)
        chosen = [index.groups[i]]
    else:
        chosen = index.groups[slice(int(start) if start else None, int(stop) if stop else None)]
        if not chosen:
            raise SelectorError(loc, f"{selector!r} selects no group", valid)
    wanted = {g.index for g in chosen}
    return {p for p, g in index.param_group.items() if g in wanted}


def _compile_regex(source: str, loc: Sequence[str | int], max_mem: int) -> re2._Regexp:
    try:
        return _re2(source, max_mem)
    except re2.error as exc:
        raise SelectorError(
            loc,
            f"bad regular expression {source!r}: {_reason(exc)}",
            "fix the pattern; RE2 syntax (no backreferences or lookaround)",
        ) from exc


def _reason(exc: re2.error) -> str:
    first = exc.args[0] if exc.args else "invalid"
    return first.decode(errors="replace") if isinstance(first, bytes) else str(first)


def _re2(source: str, max_mem: int) -> re2._Regexp:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = max_mem
    return re2.compile(source, options)


def _whole_name_hint(index: ModelIndex, selector: str, max_mem: int) -> str | None:
    """For a ``re:`` pattern that matches only part of some name: the pattern that works."""
    if not selector.startswith("re:"):
        return None
    source = selector[3:]
    try:
        partial = _re2(source, max_mem)
    except re2.error:
        return None
    if not _by_names(index, partial.search):
        return None
    body = f"(?:{source})" if "|" in source else source
    for candidate in (f"{body}.*", f".*{body}", f".*{body}.*"):
        try:
            pattern = _re2(candidate, max_mem)
        except re2.error:
            continue
        if _by_names(index, pattern.fullmatch):
            return (
                f"re: matches whole names and {source!r} only matches part of one; "
                f"use 're:{candidate}'"
            )
    return None


def _compile_glob(source: str, loc: Sequence[str | int]) -> re.Pattern[str]:
    depth = 0
    for ch in source:
        if ch == "[":
            if depth:
                raise SelectorError(
                    loc, f"bad glob {source!r}: nested '['", "close each '[' with ']'"
                )
            depth = 1
        elif ch == "]" and depth:
            depth = 0
    if depth or "[]" in source:
        raise SelectorError(
            loc, f"bad glob {source!r}: unclosed or empty '[...]'", "close each '[' with ']'"
        )
    return re.compile(fnmatch.translate(source))


def closest_names(index: ModelIndex, selector: str, n: int = 5) -> list[str]:
    """Up to ``n`` module, parameter or group names nearest to ``selector``."""
    probe = selector.split(":", 1)[1] if selector.startswith(("re:", "type:")) else selector
    pool = list(dict.fromkeys([*index.module_types, *index.params]))
    scored = sorted(
        pool, key=lambda name: (-difflib.SequenceMatcher(None, probe, name).ratio(), len(name))
    )
    return scored[:n]


def _suggest_hint(index: ModelIndex, selector: str) -> str:
    close = closest_names(index, selector)
    return f"closest names: {', '.join(close)}" if close else "GET /v1/models/layers lists names"
