"""Headless Chromium for the browser tests: Debian's `chromium` driven by Playwright.

Why Debian's binary: Playwright's own browser download needs network the CI machine does not
have, so `executable_path` points at the packaged one (`apt-get install chromium`). The flags are
the ones that work headless as root on this kind of machine (../shared/reference/stack-verified.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS_ENV = "QUARTET_SCREENSHOTS"


def chromium_path() -> str:
    """The Chromium binary (QUARTET_CHROMIUM or `chromium` on PATH); fails the test when missing,
    because `make test` installs it (a browser test that skips is not a browser test)."""
    path = os.environ.get("QUARTET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no chromium on PATH: `make test` installs it as root (apt-get install chromium)")
    return path


def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $QUARTET_SCREENSHOTS (e.g. docs/screenshots, to refresh the README's),
    else the test's tmp dir."""
    out = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def chromium(viewport: tuple[int, int] = (1280, 900), timeout_ms: int = 30_000) -> Iterator[object]:
    """A fresh browser context (its own --user-data-dir), closed on exit, also on failure.
    Yields a Playwright `Page` whose waits time out after `timeout_ms`."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="quartet-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": viewport[0], "height": viewport[1]})
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(timeout_ms)
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
