"""Live: a new call or an alert change shows on an open page without a reload (SPEC R-UI-3; the page
polls every 1.5 s while visible). Deadlines here are generous; the polling interval is the promise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
from playwright.sync_api import expect

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY

CHECKS = {"checks": [{"name": "hourly-sync", "period": "1h", "grace": "10m"}]}


def call(sidecar: RunningSidecar, session: str) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-session-id": session},
    )


def same_document(page: Any) -> None:
    page.evaluate("window.__sameDocument = true")


def test_new_sessions_and_calls_appear(fake: FakeUpstream, sidecar: RunningSidecar, open_page: Any) -> None:
    call(sidecar, "live-1")
    sidecar.wait_events(1)
    page = open_page(sidecar.url, "/ui/sessions")
    expect(page.locator("a.sid")).to_have_text(["live-1"])
    same_document(page)
    call(sidecar, "live-2")
    expect(page.locator("a.sid")).to_have_text(["live-2", "live-1"])

    page.locator("a.sid", has_text="live-1").click()
    expect(page.locator("svg.waterfall g.row")).to_have_count(1)
    call(sidecar, "live-1")
    expect(page.locator("svg.waterfall g.row")).to_have_count(2)
    expect(page.locator("caption", has_text="Calls")).to_have_text("Calls (2)")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded


def test_an_alert_change_appears(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar], open_page: Any
) -> None:
    sidecar = make_sidecar(fake.url, policies=CHECKS, policy_env={"SIDECAR_FLEET_PORT": "0"})
    httpx.post(sidecar.url + "/sidecar/v1/checkins/hourly-sync").raise_for_status()
    page = open_page(sidecar.url, "/ui/alerts")
    expect(page.locator(".ok-line")).to_have_text("Nothing firing")
    same_document(page)
    httpx.post(sidecar.url + "/sidecar/v1/checkins/hourly-sync/fail").raise_for_status()
    expect(page.locator(".firing li")).to_contain_text("hourly-sync")
    assert page.evaluate("window.__sameDocument") is True


def test_overview_rereads_only_when_calls_come_in(
    fake: FakeUpstream, sidecar: RunningSidecar, open_page: Any
) -> None:
    call(sidecar, "quiet-1")
    sidecar.wait_events(1)
    page = open_page(sidecar.url, "/ui/")
    calls = page.locator(".card:has(.card-label:text-is('Model calls')) .card-value")
    expect(calls).to_have_text("1")
    heavy: list[str] = []  # the overview's aggregate reads (summary, or the fallback's sessions list)
    page.on("request", lambda r: heavy.append(r.url) if "summary" in r.url or "limit=1000" in r.url else None)
    page.wait_for_timeout(4000)  # two or three polls with nothing new: only the cheap check runs
    assert heavy == []
    call(sidecar, "quiet-1")
    expect(calls).to_have_text("2")
    assert heavy != []
