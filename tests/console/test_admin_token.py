"""With an admin token the console asks for it once, sends it as a Bearer header, and never puts it in a
URL (SPEC R-UI-1, R-UI-3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
from playwright.sync_api import expect

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY

TOKEN = "s3cret-admin-token"


def test_asked_once_then_sent_as_bearer(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar], open_page: Any
) -> None:
    sidecar = make_sidecar(fake.url, admin_token=TOKEN)
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-session-id": "guarded-1"},
    )
    sidecar.wait_events(1)
    page = open_page(sidecar.url, "/ui/sessions", token=TOKEN, allow=[("/sidecar/v1/sessions", 401)])
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda r: seen.append((r.url, r.headers.get("authorization"))))
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Token").fill("wrong")
    dialog.get_by_role("button", name="Use token").click()
    expect(dialog.locator(".token-refused")).to_be_visible()  # asked again, saying why
    dialog.get_by_label("Token").fill(TOKEN)
    dialog.get_by_role("button", name="Use token").click()
    expect(page.locator("a.sid")).to_have_text(["guarded-1"])
    expect(dialog).to_be_hidden()

    page.locator("a.sid").click()  # other pages, and a reload, use the token kept for this tab
    expect(page.locator("h1")).to_have_text("guarded-1")
    page.reload()
    expect(page.locator("h1")).to_have_text("guarded-1")
    expect(dialog).to_be_hidden()
    api = [(url, auth) for url, auth in seen if "/sidecar/v1/" in url]
    assert api and api[-1][1] == f"Bearer {TOKEN}"
    assert all(TOKEN not in url for url, _ in seen)


def test_cancelled_prompt_leaves_a_way_back(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar], open_page: Any
) -> None:
    sidecar = make_sidecar(fake.url, admin_token=TOKEN)
    page = open_page(sidecar.url, "/ui/fleet", token=TOKEN, allow=[("/sidecar/v1/fleet", 401)])
    dialog = page.locator("#token-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator("#live")).to_contain_text("Admin token needed")
    page.wait_for_timeout(2000)  # polling goes on without asking again
    expect(dialog).to_be_hidden()
    page.locator("#live").get_by_role("button", name="Enter token").click()
    dialog.get_by_label("Token").fill(TOKEN)
    dialog.get_by_role("button", name="Use token").click()
    expect(page.locator("main")).to_contain_text("No fleet member has connected yet.")
