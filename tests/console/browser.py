"""A real headless browser for the console's tests: the system's chromium (Debian's `chromium`
package; never a browser Playwright downloads) driven by Playwright. Without a chromium binary the
browser tests are skipped, saying so; `.ci/run` installs the package where it can.

Screenshots go to $PAYCELL_TEST_ARTIFACTS/console (default .test-artifacts/console, gitignored)."""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """PAYCELL_TEST_CHROMIUM when set, else the first chromium on PATH."""
    wanted = os.environ.get("PAYCELL_TEST_CHROMIUM")
    if wanted:
        return wanted if os.access(wanted, os.X_OK) else shutil.which(wanted)
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("PAYCELL_TEST_ARTIFACTS", ".test-artifacts")) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
async def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium binary: the console's browser tests need one (apt-get install chromium, "
                    "or set PAYCELL_TEST_CHROMIUM to a Chromium or Chrome executable)")
    async_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed "
                                    "(pip install -e '.[dev]')")
    async with async_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


class Tab:
    """One browser context (its own cookies) and page, recording every dialog a page opened."""

    def __init__(self, page, base_url: str):
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        asyncio.ensure_future(dialog.dismiss())

    def _console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def assert_inert(self) -> None:
        """No page opened a dialog, and the browser refused nothing under the Content-Security-Policy
        (an inline style or script in a template would be reported here)."""
        assert self.dialogs == [], self.dialogs
        assert not [m for m in self.console_errors if "Content Security Policy" in m], self.console_errors

    async def goto(self, path: str):
        return await self.page.goto(self.base_url + path)

    async def sign_in(self, token: str, *, screenshot: str | None = None) -> None:
        await self.goto("/console/")
        assert self.page.url.endswith("/console/sign-in"), self.page.url
        await self.page.fill("#token", token)
        if screenshot:
            await self.screenshot(screenshot)
        await self.page.click("button:has-text('Sign in')")
        await self.page.wait_for_url(self.base_url + "/console/")

    async def screenshot(self, name: str) -> Path:
        path = artifacts_dir() / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def tab(browser, web):
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        yield Tab(await context.new_page(), str(web.make_url("/")))
    finally:
        await context.close()
