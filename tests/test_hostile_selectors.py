"""Issue 8.1: selector regexes run on RE2 (linear time) within length and count limits, and
spec resolution runs in a bounded pool with a deadline per request."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError
from support import make_spec, minilm_spec, resolved

from service.api.spec_pool import SpecPool
from service.http.problems import Problem
from thaw.errors import SelectorError
from thaw.freezing.model_index import ModelIndex
from thaw.freezing.selectors import select
from thaw.settings import Settings

LIMITS = Settings()
RULE = ("freeze", "rules", 0, "match")


@pytest.fixture(scope="module")
def minilm() -> ModelIndex:
    return resolved(minilm_spec(), meta=True).index


@pytest.mark.parametrize("pattern", ["re:(.*){9}X", "re:(.*.*)*X", "re:(a*)*$X"])
def test_catastrophic_patterns_answer_at_once(minilm: ModelIndex, pattern: str) -> None:
    # With backtracking `re` these take longer than the age of the universe on BERT names.
    with pytest.raises(SelectorError) as info:
        select(minilm, pattern, RULE, LIMITS)
    assert info.value.message == f"selector {pattern!r} matches no parameter"
    assert info.value.path == "freeze.rules[0].match"


def test_regex_that_matches_only_part_of_names_shows_the_one_that_works(minilm) -> None:
    with pytest.raises(SelectorError) as info:
        select(minilm, r"re:^bert\.encoder\.layer\.[0-3]\.", RULE, LIMITS)
    assert info.value.hint == (
        r"re: matches whole names and '^bert\\.encoder\\.layer\\.[0-3]\\.' only matches part "
        r"of one; use 're:^bert\.encoder\.layer\.[0-3]\..*'"
    )
    suggested = select(minilm, r"re:^bert\.encoder\.layer\.[0-3]\..*", RULE, LIMITS)
    assert suggested[0] == "bert.encoder.layer.0.attention.self.query.weight"
    assert suggested[-1] == "bert.encoder.layer.3.output.LayerNorm.bias"
    with pytest.raises(SelectorError) as info:
        select(minilm, r"re:attention\.self", RULE, LIMITS)
    assert info.value.hint.endswith("use 're:.*attention\\.self'")  # the module name


def test_backreferences_are_refused_with_the_reason(minilm) -> None:
    with pytest.raises(SelectorError) as info:
        select(minilm, r"re:(bert)\1", RULE, LIMITS)
    assert info.value.message == r"bad regular expression '(bert)\\1': invalid escape sequence: \1"
    assert info.value.hint == "fix the pattern; RE2 syntax (no backreferences or lookaround)"


def test_pattern_length_and_selector_count_are_limited() -> None:
    long = "re:" + "a" * 257
    with pytest.raises(ValidationError) as info:
        make_spec(freeze={"rules": [{"match": long, "trainable": True}]})
    error = info.value.errors()[0]
    assert error["loc"] == ("freeze", "rules", 0, "match")
    assert "the re: pattern is 257 characters; at most 256" in error["msg"]
    make_spec(freeze={"rules": [{"match": "re:" + "a" * 256, "trainable": True}]})

    events = [{"at_epoch": 1, "unfreeze": ["fc"] * 100} for _ in range(10)]
    with pytest.raises(ValidationError) as info:
        make_spec(freeze={"rules": [{"match": "fc", "trainable": True}]}, schedule=events)
    assert "the spec holds 1001 selectors; at most 1000 (THAW_MAX_SELECTORS)" in str(info.value)


def test_spec_pool_deadline_costs_only_its_own_request() -> None:
    pool = SpecPool(Settings(plan_workers=1, plan_timeout_seconds=0.2))
    release = threading.Event()
    started: list[str] = []

    def slow(tag: str) -> str:
        started.append(tag)
        release.wait(10)
        return tag

    async def scenario() -> tuple[list[object], str]:
        results = await asyncio.gather(
            pool.run(slow, "first"), pool.run(slow, "queued"), return_exceptions=True
        )
        release.set()
        await asyncio.sleep(0.05)
        return results, await pool.run(lambda: "fresh")

    try:
        # A loop of its own thread: a browser fixture may keep one running in this thread.
        with ThreadPoolExecutor(1) as runner:
            results, fresh = runner.submit(asyncio.run, scenario()).result()
    finally:
        release.set()
        pool.close()
    assert all(isinstance(r, Problem) and r.status == 503 for r in results)
    assert results[0].code == "spec_timeout"
    assert results[0].headers == {"Retry-After": "5"}
    assert "THAW_PLAN_TIMEOUT_SECONDS" in results[0].detail
    time.sleep(0.1)
    assert started == ["first"]  # the call still waiting for a thread never ran
    assert fresh == "fresh"
