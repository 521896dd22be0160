"""Browser fixtures: Debian's chromium driven by Playwright, every request held to loopback, every console
error a failure, and a screenshot helper (``SIDECAR_SCREENSHOTS`` picks the folder; ``build/screenshots``
by default, ``docs/screenshots`` to refresh the README's)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import require_service
from tests.console.fmt import VIEWER_ZONE
from tests.console.story import Story, running_story

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SIDECAR_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 10_000  # generous: a loaded 2-core CI machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an event loop running
    in this thread while it is open, which would break every later test that runs its own loop."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service(False, "playwright (pip install '.[test]')")
    require_service(shutil.which(CHROMIUM) is not None, f"chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        # Playwright cannot download its own browser here: Debian's chromium is used as it is.
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


class PageGuard:
    """What a page did that it must not: requests beyond 127.0.0.1, console errors, uncaught exceptions."""

    def __init__(self, summary_missing: bool, allow: list[tuple[str, int]]) -> None:
        # Loads that fail on purpose: Chrome logs each failed fetch as a console error.
        self.allow = [*allow, *([("/sidecar/v1/summary", 404)] if summary_missing else [])]
        self.foreign: list[str] = []
        self.errors: list[str] = []

    def on_request(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname != "127.0.0.1":
            self.foreign.append(url)
            route.abort()
        else:
            route.fallback()

    def on_console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        where = urlsplit(msg.location.get("url", "")).path
        if any(where == path and f"status of {status} " in msg.text for path, status in self.allow):
            return
        self.errors.append(f"{msg.text} at {msg.location}")

    def check(self) -> None:
        assert self.foreign == [], f"requests left loopback: {self.foreign}"
        assert self.errors == [], f"console errors: {self.errors}"


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``open_page(story_or_url, path)``: a fresh page in the viewer's zone, guarded, at ``path``."""
    contexts: list[Any] = []
    guards: list[PageGuard] = []

    def open_(
        base: Story | str, path: str = "/ui/", *, token: str | None = None, allow: list[tuple[str, int]] = ()
    ) -> Any:
        """``allow``: (path, status) of API answers that fail on purpose in this test."""
        url = base.url if isinstance(base, Story) else base
        token = token or (base.sidecar.settings.admin_token if isinstance(base, Story) else None)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        summary_missing = httpx.get(url + "/sidecar/v1/summary", headers=headers).status_code == 404
        ctx = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id=VIEWER_ZONE)
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        # The overview asks for the summary and falls back when this sidecar answers 404.
        guard = PageGuard(summary_missing, list(allow))
        guards.append(guard)
        ctx.route("**/*", guard.on_request)
        page = ctx.new_page()
        page.on("console", guard.on_console)
        page.on("pageerror", lambda exc: guard.errors.append(f"uncaught: {exc}"))
        page.goto(url + path)
        return page

    yield open_
    for ctx in contexts:
        ctx.close()
    for guard in guards:
        guard.check()


def screenshot(page: Any, name: str) -> Path:
    """Write a full-page PNG of ``page`` for the README (``SIDECAR_SCREENSHOTS`` or build/screenshots)."""
    folder = Path(os.environ.get("SIDECAR_SCREENSHOTS") or ROOT / "build" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.mouse.move(0, 0)  # no hover state in the picture
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header at the top
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The story's sidecar, shared by a module's tests (they only read it)."""
    with FakeUpstream() as fake, running_story(tmp_path_factory.mktemp("story"), fake) as s:
        yield s
