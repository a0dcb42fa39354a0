"""Headless Chromium (Debian's ``chromium``) driven by Playwright, with screenshots kept.

Screenshots go to ``THAW_TEST_ARTIFACTS`` (default ``test-artifacts/`` in the repository,
git-ignored); the folder is printed at the end of the run."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CSP_VIOLATION = "Content Security Policy"
# ReDoc's bundle links its vendor logo from a CDN; the docs policy blocks it on purpose.
CSP_BLOCKED_ON_PURPOSE = "'https://cdn.redoc.ly/"
CHROMIUM = os.environ.get("THAW_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("THAW_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")
)


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Iterator[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield ARTIFACTS
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"browser screenshots: {ARTIFACTS}")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh context (empty sessionStorage) per test; a screenshot of the last page after it.

    Uncaught JavaScript errors and Content-Security-Policy violations fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: (
            violations.append(msg.text)
            if CSP_VIOLATION in msg.text and CSP_BLOCKED_ON_PURPOSE not in msg.text
            else None
        ),
    )
    try:
        yield page
    finally:
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        try:
            page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
        finally:
            context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert violations == [], f"Content-Security-Policy violations: {violations}"
