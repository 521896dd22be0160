"""What the console changes goes through the admin API and shows at once: block / unblock a session or an
app, edit an app's ceilings, snooze a check, start maintenance, forget a fleet member (SPEC R-UI-2)."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import pytest
from playwright.sync_api import expect

from tests.conftest import API_KEY
from tests.console.fmt import usd, when
from tests.console.story import MODELS, Story


def call(story: Story, session: str) -> Any:
    client = anthropic.Anthropic(base_url=story.sidecar.url, api_key=API_KEY, max_retries=0)
    return client.messages.create(
        model=MODELS[1],
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-session-id": session, "x-app-name": "support-bot"},
    )


def test_block_and_unblock_a_session(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/sessions/sess-01-b9e1")
    page.get_by_role("button", name="Block session", exact=True).click()
    expect(page.locator(".action-status")).to_contain_text("Blocked: its next calls are refused")
    with pytest.raises(anthropic.RateLimitError) as refused:
        call(story, "sess-01-b9e1")
    assert refused.value.body["error"]["type"] == "budget_exceeded_error"  # type: ignore[index]
    assert "blocked" in refused.value.message
    page.get_by_role("button", name="Unblock session", exact=True).click()
    expect(page.locator(".action-status")).to_contain_text("Not blocked")
    assert call(story, "sess-01-b9e1").stop_reason == "end_turn"


def test_edit_an_apps_ceilings_then_block_it(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/budgets")
    row = page.locator("main table tbody tr", has_text="support-bot")
    row.get_by_role("button", name="Edit").click()
    form = page.get_by_role("form", name="Ceilings of support-bot")
    form.get_by_label("$ per session").fill("0.5")
    form.get_by_label("Tool calls per session").fill("")
    form.get_by_label("Tokens per session").fill("250000")
    form.get_by_label("Mode", exact=True).select_option("warn")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("main > .action-status")).to_have_text("support-bot: ceilings saved.")
    limits = story.get("/sidecar/v1/apps/support-bot/budget")["limits"]
    assert limits == {
        "session_max_usd": 0.5,
        "session_max_tokens": 250000,
        "session_max_model_calls": None,
        "session_max_tool_calls": None,
        "app_max_usd_per_day": None,
        "mode": "warn",
    }
    expect(row.locator("td").nth(2)).to_have_text(usd(0.5))
    expect(row.locator("td").nth(3)).to_have_text("250,000")
    expect(row.locator("td").nth(1)).to_have_text("warn")

    row.get_by_role("button", name="Edit").click()
    form.get_by_role("button", name="Reset to configured").click()
    expect(row.locator("td").nth(2)).to_have_text("$2.00")
    assert story.get("/sidecar/v1/apps/support-bot/budget")["limits"]["session_max_tool_calls"] == 40

    row.get_by_role("button", name="Block", exact=True).click()
    expect(row.locator("td").nth(7)).to_have_text("Blocked")
    assert story.get("/sidecar/v1/apps/support-bot/budget")["blocked"] is True
    with pytest.raises(anthropic.RateLimitError):
        call(story, "any-session")
    row.get_by_role("button", name="Unblock", exact=True).click()
    expect(row.locator("td").nth(7)).to_have_text("Active")
    assert story.get("/sidecar/v1/apps/support-bot/budget")["blocked"] is False


def test_a_refused_edit_says_why(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/budgets", allow=[("/sidecar/v1/apps/voice-agent/budget", 400)])
    page.locator("main table tbody tr", has_text="voice-agent").get_by_role("button", name="Edit").click()
    form = page.get_by_role("form", name="Ceilings of voice-agent")
    form.get_by_label("$ per session").fill("-1")
    form.evaluate("f => f.noValidate = true")  # past the browser's own check, to the API's
    form.get_by_role("button", name="Save").click()
    expect(form.locator(".action-status")).to_contain_text("Not saved: session_max_usd")
    assert story.get("/sidecar/v1/apps/voice-agent/budget")["limits"]["session_max_usd"] == 2.0


def test_snooze_a_check_and_start_maintenance(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/alerts")
    row = page.locator("table:has(caption:text-is('Checks')) tbody tr", has_text="nightly-eval")
    row.get_by_label("Snooze nightly-eval for").select_option("4h")
    before = time.time()
    row.get_by_role("button", name="Snooze", exact=True).click()
    expect(row.get_by_role("button", name="Unsnooze")).to_be_visible()
    (snooze,) = story.get("/sidecar/v1/alerts")["snoozes"]
    assert (
        snooze["scope"] == "nightly-eval"
        and before + 4 * 3600 - 5 < snooze["until"] < time.time() + 4 * 3600 + 5
    )
    snoozes = page.locator("table:has(caption:text-is('Snoozes and maintenance')) tbody tr")
    expect(snoozes).to_have_text([f"nightly-eval{when(snooze['until'])}snoozed"])
    row.get_by_role("button", name="Unsnooze").click()
    expect(snoozes).to_have_text(["None."])
    assert story.get("/sidecar/v1/alerts")["snoozes"] == []

    page.get_by_role("button", name="Start 1 h maintenance").click()
    expect(snoozes.first).to_contain_text("everything (maintenance)")
    assert [s["scope"] for s in story.get("/sidecar/v1/alerts")["snoozes"]] == ["*"]
    page.get_by_role("button", name="End maintenance").click()
    expect(snoozes).to_have_text(["None."])


def test_forget_a_member_that_left(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/fleet")
    gone = page.locator("main table tbody tr", has_text="voice-agent-3")
    gone.get_by_role("button", name="Forget").click()
    expect(gone).to_have_count(0)
    members = story.get("/sidecar/v1/fleet")["fleets"][0]["members"]
    assert [m["member"] for m in members] == ["voice-agent-1", "voice-agent-2"]
    expect(page.get_by_role("button", name="Forget")).to_have_count(0)  # the connected ones stay
