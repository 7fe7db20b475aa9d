"""What the browser tests share: Debian's Chromium, Playwright's timeout, screenshots, confirmations."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium, which Playwright drives (tests/install-system-packages.sh installs it)."""

TIMEOUT_MS = 20_000
"""How long Playwright waits for a page or an element."""

SCREENSHOTS = os.environ.get("SCREENSHOT_DIR", "")
"""Where to save the README's screenshots (``SCREENSHOT_DIR=docs make test``); none when empty."""


def shoot(page: Page, name: str) -> None:
    """Save a full-page screenshot as ``name`` when SCREENSHOT_DIR is set."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def confirm(page: Page) -> None:
    """Every action asks first: the confirmation page, then its button."""
    expect(page.locator("h1")).to_contain_text("Confirm")
    page.locator("#confirm").click()
