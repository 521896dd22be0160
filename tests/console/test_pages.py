"""Every console page in a real browser shows the numbers the admin API returns (SPEC R-UI-2, R-UI-4,
R-UI-5), with no console error and no request beyond loopback; each page leaves a screenshot."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import screenshot
from tests.console.fmt import integer, pct, secs, time_of_day, tokens, usd, when
from tests.console.story import AGENTS_SESSION, CLOCK_SESSION, MAIN_AGENT, STORY_SESSION, Story


def rows(page: Any, selector: str = "main table") -> list[list[str]]:
    """The text of each body row of the first table matching ``selector``."""
    table = page.locator(selector).first
    expect(table.locator("tbody tr").first).to_be_visible()
    return table.locator("tbody tr").evaluate_all(
        "trs => trs.map(tr => [...tr.cells].map(td => td.innerText.trim()))"
    )


def columns(page: Any, selector: str) -> dict[str, list[str]]:
    """Each column of the first table matching ``selector``, by its header's text."""
    body = rows(page, selector)  # waits for the table
    heads = page.locator(selector).first.locator("thead th").all_text_contents()
    return {head.strip(): [r[n] for r in body] for n, head in enumerate(heads)}


def when_or_dash(ts: float | None) -> str:
    return "—" if ts is None else when(ts)


def card(page: Any, label: str) -> Any:
    return page.locator(f".card:has(.card-label:text-is('{label}')) .card-value")


def test_overview_adds_up_what_the_api_says(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/")
    summary = story.get_status("/sidecar/v1/summary")
    sessions = story.get("/sidecar/v1/sessions", limit=1000)["sessions"]
    if summary == 200:  # the summary endpoint answers: the page shows its totals
        doc = story.get("/sidecar/v1/summary", since=0, group_by="app")
        week, calls = doc["totals"]["cost_usd"], doc["totals"]["model_calls"]
        by_app = {r["key"]: r["cost_usd"] for r in doc["rows"]}
    else:  # the fallback: the sessions list, added up, and a notice that says so
        expect(page.locator(".notice")).to_contain_text("no summary endpoint")
        week = math.fsum(s["cost_usd"] for s in sessions)
        calls = sum(s["model_calls"] for s in sessions)
        by_app = defaultdict(float)
        for s in sessions:
            by_app[s["app"]] += s["cost_usd"]
    expect(card(page, "Spend 7 days")).to_have_text(usd(week))
    expect(card(page, "Model calls")).to_have_text(integer(calls))
    errors = sum(s["error_calls"] for s in sessions)
    expect(card(page, "Errors")).to_have_text(integer(errors))
    table = {r[0]: r for r in rows(page, "table:has(caption:text-is('Spend by app'))")}
    assert set(table) == set(by_app)
    for app, cost in by_app.items():
        assert table[app][2] == usd(cost), app
    screenshot(page, "overview")


def test_overview_shows_cache_misses_and_rate_limit_headroom(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/")
    week = story.get("/sidecar/v1/summary", since=time.time() - 7 * 86400, group_by="app")
    # Misses by reason with the dollars they lost (R-CD-3), the costliest first.
    misses = week["totals"]["cache_misses_by_reason"]
    assert "system_changed" in misses  # the clock session's
    expected = sorted(misses.items(), key=lambda kv: (-kv[1]["cost_usd"], -kv[1]["misses"]))
    shown = rows(page, "table:has(caption:text-is('Cache misses by reason'))")
    assert shown == [[reason, integer(m["misses"]), usd(m["cost_usd"])] for reason, m in expected]
    expect(card(page, "Cache-miss cost")).to_have_text(usd(week["totals"]["cache_miss_cost_usd"]))
    # The latest headroom of each app and key (R-RL-1): API-key limits and the subscription's windows.
    headroom = sorted(
        week["ratelimit"], key=lambda r: -(r["utilization"] if r["utilization"] is not None else -1)
    )
    windows = [r for r in headroom if "window" in r]
    assert {(r["app"], r["window"]) for r in windows} == {("research", "5h"), ("research", "7d")}
    shown = rows(page, "table:has(caption:text-is('Rate-limit headroom'))")
    assert len(shown) == len(headroom)
    for row, r in zip(shown, headroom, strict=True):
        if "window" in r:
            limit, remaining = f"{r['window']} window", r["status"]
        else:
            limit, remaining = r["type"], f"{integer(round(r['remaining']))} of {integer(round(r['limit']))}"
        assert row == [r["app"], r["key"], limit, remaining, pct(r["utilization"]), when_or_dash(r["reset"])]
    # The subscription's windows come first: the most used limits lead.
    assert [row[2] for row in shown[:2]] == ["5h window", "7d window"]
    assert shown[0][3] == "allowed" and shown[0][4] == "62.0%"


def test_sessions_table_is_the_api_list_and_sorts(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/sessions")
    listed = story.get("/sidecar/v1/sessions", limit=50)["sessions"]
    shown = rows(page)
    assert [r[0] for r in shown] == [s["session_id"] for s in listed]
    for row, s in zip(shown, listed, strict=True):
        assert row[1] == s["app"]
        assert row[2] == when(s["last_seen_at_ts"])  # the viewer's zone, not the machine's
        assert (row[4], row[5]) == (integer(s["model_calls"]), integer(s["tool_calls"]))
        assert (row[6], row[7]) == (integer(tokens(s)), usd(s["cost_usd"]))
        assert row[10] == pct(s["cache_hit_ratio"])
        assert row[12] == ("Open" if s["open"] else "Closed")
    screenshot(page, "sessions")

    page.get_by_role("link", name="Cost", exact=True).click()
    expect(page).to_have_url(f"{story.url}/ui/sessions?order=cost")
    by_cost = story.get("/sidecar/v1/sessions", limit=50, order="cost")["sessions"]
    expect(page.locator("th[aria-sort=descending]")).to_have_text("Cost ▼")
    expect(page.locator("a.sid").first).to_have_text(by_cost[0]["session_id"])
    assert [r[0] for r in rows(page)] == [s["session_id"] for s in by_cost]
    assert [r[7] for r in rows(page)] == [usd(s["cost_usd"]) for s in by_cost]


def test_sessions_table_by_keyboard(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/sessions")
    ids = [s["session_id"] for s in story.get("/sidecar/v1/sessions", limit=50)["sessions"]]
    expect(page.locator("a.sid")).to_have_count(len(ids))
    page.keyboard.press("/")  # jumps to the search field
    expect(page.locator("#filter-q")).to_be_focused()
    focused = "document.activeElement.dataset.sid || document.activeElement.id"
    # Tab reaches the table once (one tab stop for all rows), arrows move inside it.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate(focused) == ids[0]:
            break
    assert page.evaluate(focused) == ids[0]
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == ids[2]
    page.keyboard.press("ArrowUp")
    assert page.evaluate(focused) == ids[1]
    page.keyboard.press("End")
    assert page.evaluate(focused) == ids[-1]
    page.keyboard.press("Home")
    assert page.evaluate(focused) == ids[0]
    page.keyboard.press("ArrowDown")
    assert page.locator("a.sid[tabindex='0']").evaluate_all("as => as.map(a => a.dataset.sid)") == [ids[1]]
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(focused) not in ids  # left the table in one step
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == ids[1]  # and came back to the row it left
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{story.url}/ui/sessions/{ids[1]}")
    expect(page.locator("h1")).to_have_text(ids[1])
    page.go_back()
    expect(page.locator("a.sid")).to_have_count(len(ids))


def test_session_page_tells_the_api_story(story: Story, open_page: Any) -> None:
    doc = story.get(f"/sidecar/v1/sessions/{STORY_SESSION}")
    budget = story.get(f"/sidecar/v1/apps/{doc['app']}/budget")
    page = open_page(story, f"/ui/sessions/{STORY_SESSION}")
    expect(page.locator("h1")).to_have_text(STORY_SESSION)
    expect(page.locator(".meta")).to_contain_text(f"Started {when(doc['started_at_ts'])}")
    expect(card(page, "Cost")).to_have_text(usd(doc["cost_usd"]))
    expect(card(page, "Model calls")).to_have_text(integer(doc["model_calls"]))
    expect(card(page, "Tool calls")).to_have_text(integer(doc["tool_calls"]))
    expect(card(page, "Tokens")).to_have_text(integer(tokens(doc)))
    expect(card(page, "Tool time")).to_have_text(secs(doc["tool_time_s"]))
    # Budget use against the app's ceilings (session $2.00 and 40 tool calls by default in the story).
    limit = budget["limits"]["session_max_usd"]
    share = f"{doc['cost_usd'] / limit * 100:.1f}%"
    expect(page.locator(".meter-row", has_text="Session cost")).to_contain_text(
        f"{usd(doc['cost_usd'])} of {usd(limit)} ({share})"
    )
    expect(page.locator(".meter-row", has_text="Model calls")).to_contain_text("4 · no ceiling")
    # Every call in the table, numbers as the API gives them.
    calls = doc["calls"]
    shown = rows(page, "table:has(caption:text-matches('^Calls'))")
    assert len(shown) == len(calls)
    for row, c in zip(shown, calls, strict=True):
        assert row[1] == time_of_day(c["started_at_ts"])
        assert row[2].startswith(c["model"])
        assert row[3].split("\n")[1:] == ([f"asks {', '.join(c['tool_uses'])}"] if c["tool_uses"] else [])
        assert row[4:8] == [
            secs(c["ttft_s"]),
            secs(c["duration_s"]),
            integer(c["input_tokens"]),
            integer(c["output_tokens"]),
        ]
        assert row[8:11] == [
            integer(c["cache_read_input_tokens"]),
            integer(c["cache_creation_input_tokens"]),
            usd(c["cost_usd"]),
        ]
    tool = rows(page, "table:has(caption:text-is('Tools'))")[0]
    stats = doc["tools"]["lookup_order"]
    assert tool == [
        "lookup_order",
        integer(stats["count"]),
        integer(stats["errors"]),
        secs(stats["p50_s"]),
        secs(stats["p95_s"]),
        secs(stats["total_s"]),
    ]
    # The waterfall: a row per call, a bar per measured tool run, the failed tool marked.
    results = [r for c in calls for r in c["tool_results"]]
    expect(page.locator("svg.waterfall g.row")).to_have_count(len(calls))
    expect(page.locator("svg.waterfall .bar-tool")).to_have_count(len(results))
    expect(page.locator("svg.waterfall .bar-tool-error")).to_have_count(sum(r["is_error"] for r in results))
    screenshot(page, "session")


def test_waterfall_details_on_hover_and_on_focus(story: Story, open_page: Any) -> None:
    calls = story.get(f"/sidecar/v1/sessions/{STORY_SESSION}")["calls"]
    page = open_page(story, f"/ui/sessions/{STORY_SESSION}")
    tip = page.locator("#tip")
    page.locator("svg.waterfall g.row").nth(1).locator(".bar-gen").hover()
    expect(tip).to_be_visible()
    second = calls[1]
    expect(tip.locator(".tip-title")).to_have_text(f"#2 {second['model']} (stream)")
    for text in (
        usd(second["cost_usd"]),
        integer(second["cache_read_input_tokens"]),
        f"TTFT {secs(second['ttft_s'])}",
        f"total {secs(second['duration_s'])}",
    ):
        expect(tip).to_contain_text(text)
    page.locator("svg.waterfall g.row").nth(1).locator(".bar-tool").hover()  # the tool run before call 2
    expect(tip.locator(".tip-title")).to_have_text("Tool lookup_order")
    expect(tip).to_contain_text(secs(second["tool_results"][0]["latency_s"]))

    page.mouse.move(0, 0)
    expect(tip).to_be_hidden()
    page.locator("svg.waterfall g.row").first.focus()
    expect(tip.locator(".tip-title")).to_have_text(f"#1 {calls[0]['model']}")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(tip.locator(".tip-title")).to_contain_text("#3 ")
    expect(tip).to_contain_text("returned an error")  # call 3 carried the failed tool's result
    name = page.locator("svg.waterfall g.row").nth(2).get_attribute("aria-label") or ""
    assert (
        name.startswith("#3 ") and f"Cost: {usd(calls[2]['cost_usd'])}" in name
    )  # what a screen reader says
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()


def check_cache_cell(text: str, call: dict[str, Any]) -> None:
    """The Calls table's Cache cell says, line by line, what the API's R-CD fields say of ``call``: the
    outcome; for a miss its reason and dollars lost, the reason in plain words with the tokens paid again,
    the diagnosis's detail; the API's own reason when the answer carried one."""
    shown = text.split("\n")
    api = [f"The API says: {call['api_cache_miss_reason']}"] if call["api_cache_miss_reason"] else []
    if call["cache_outcome"] != "miss":
        assert shown == [call["cache_outcome"] or "—", *api]
        return
    head = f"miss: {call['cache_miss_reason']} · {usd(call['cache_miss_cost_usd'])} lost"
    assert [shown[0], *shown[2:]] == [head, call["cache_miss_detail"], *api]
    assert shown[1].endswith(f"; {integer(call['cache_missed_tokens'])} cached tokens paid again.")


def test_agent_lanes_and_their_cache(story: Story, open_page: Any) -> None:
    doc = story.get(f"/sidecar/v1/sessions/{AGENTS_SESSION}")
    # The API gives each call the agent ids its client sent (R-RS-4) and the cache diagnosis (R-CD).
    sent = [story.agents[c["request_id"]] for c in doc["calls"]]
    assert [(c["agent_id"], c["parent_agent_id"]) for c in doc["calls"]] == sent
    assert all(c["cache_outcome"] in ("hit", "write", "miss", "none") for c in doc["calls"])
    page = open_page(story, f"/ui/sessions/{AGENTS_SESSION}")
    # A lane per agent, in the order each started (the two sub-agents ran side by side).
    agents = list(dict.fromkeys(c["agent_id"] for c in doc["calls"]))
    assert sorted(agents) == sorted([MAIN_AGENT, "explore-docs", "check-tests"])
    titles = {MAIN_AGENT: f"Agent {MAIN_AGENT}"}
    titles |= {a: f"Agent {a} · sub-agent of {MAIN_AGENT}" for a in agents if a != MAIN_AGENT}
    expect(page.locator("svg.waterfall text.lane")).to_have_text([titles[a] for a in agents])
    # Rows sit under their agent's lane: lane and row labels in drawing order.
    expected: list[str] = []
    for agent in agents:
        expected.append(titles[agent])
        expected += [f"#{n} {c['model']}" for n, c in enumerate(doc["calls"], 1) if c["agent_id"] == agent]
    drawn = page.locator("svg.waterfall text.lane, svg.waterfall text.row-label").all_text_contents()
    assert drawn == expected
    table = columns(page, "table:has(caption:text-matches('^Calls'))")
    assert table["Agent"] == [c["agent_id"] for c in doc["calls"]]
    # Each call's cache outcome as the API diagnosed it (parallel sub-agents share the session's
    # diagnosis, so a sub-agent's call is compared with the other's).
    for text, call in zip(table["Cache"], doc["calls"], strict=True):
        check_cache_cell(text, call)
    misses = [c for c in doc["calls"] if c["cache_outcome"] == "miss"]
    expect(card(page, "Cache misses")).to_have_text(integer(doc["cache_misses"]))
    assert doc["cache_misses"] == len(misses)
    expect(card(page, "Cache-miss cost")).to_have_text(usd(doc["cache_miss_cost_usd"]))
    screenshot(page, "session-agents")


def test_why_the_cache_missed(story: Story, open_page: Any) -> None:
    doc = story.get(f"/sidecar/v1/sessions/{CLOCK_SESSION}")
    calls = doc["calls"]
    # The time in the system prompt: the first call writes the prefix, each later one writes it again.
    assert [c["cache_outcome"] for c in calls] == ["write", "miss", "miss"]
    missed = calls[1]
    assert missed["cache_miss_reason"] == missed["api_cache_miss_reason"] == "system_changed"
    assert "timestamp-like" in missed["cache_miss_detail"] and missed["cache_miss_cost_usd"] > 0
    page = open_page(story, f"/ui/sessions/{CLOCK_SESSION}")
    table = columns(page, "table:has(caption:text-matches('^Calls'))")
    assert table["Cost"] == [usd(c["cost_usd"]) for c in calls]
    for text, call in zip(table["Cache"], calls, strict=True):
        check_cache_cell(text, call)
    assert table["Cache"][1].split("\n")[1] == (
        f"The system prompt changed; {integer(missed['cache_missed_tokens'])} cached tokens paid again."
    )
    expect(card(page, "Cache misses")).to_have_text(integer(doc["cache_misses"]))
    expect(page.locator(".card:has(.card-label:text-is('Cache misses')) .card-note")).to_have_text(
        f"system_changed {integer(doc['cache_misses_by_reason']['system_changed'])}"
    )
    expect(card(page, "Cache-miss cost")).to_have_text(usd(doc["cache_miss_cost_usd"]))
    # The waterfall's details say the same.
    page.locator("svg.waterfall g.row").nth(1).locator(".bar-gen").hover()
    expect(page.locator("#tip")).to_contain_text(
        f"miss — system_changed: {missed['cache_miss_detail']} (lost {usd(missed['cache_miss_cost_usd'])})"
        " · API: system_changed"
    )
    screenshot(page, "session-cache-miss")


def test_budgets_page_shows_each_apps_ceilings(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/budgets")
    apps = sorted({s["app"] for s in story.get("/sidecar/v1/sessions", limit=1000)["sessions"]} | {"default"})
    expect(page.locator("main table tbody tr")).to_have_count(len(apps))
    for row in rows(page):
        b = story.get(f"/sidecar/v1/apps/{row[0]}/budget")
        limits = b["limits"]
        assert row[1] == limits["mode"]
        assert row[2] == usd(limits["session_max_usd"])
        assert row[4] == (
            integer(limits["session_max_model_calls"]) if limits["session_max_model_calls"] else "none"
        )
        ceiling = limits["app_max_usd_per_day"]
        spent = usd(b["used_usd_today"])
        assert row[6].startswith(f"{spent} of {usd(ceiling)}" if ceiling else f"{spent} · no ceiling")
        assert row[7] == ("Blocked" if b["blocked"] else "Active")
    assert [r[0] for r in rows(page)] == apps
    screenshot(page, "budgets")


def test_fleet_page_shows_members(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/fleet")
    fleet = story.get("/sidecar/v1/fleet")["fleets"][0]
    expect(page.locator("main h2")).to_have_text(
        f"voice · {fleet['connected']} of {fleet['known']} connected"
    )
    shown = {r[0]: r for r in rows(page)}
    for m in fleet["members"]:
        row = shown[m["member"]]
        assert row[1] == ("Connected" if m["connected"] else f"Gone: {m['disconnect_reason']}")
        assert row[7] == integer(m["missed_pongs"])
    assert shown["voice-agent-1"][1] == "Connected" and shown["voice-agent-3"][1].startswith("Gone")
    screenshot(page, "fleet")


def test_alerts_page_shows_checks_and_what_fires(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/alerts")
    # voice-agent-3 vanished without a goodbye: its member check fires after a 1 s grace.
    expect(page.locator(".firing li")).to_contain_text("voice-members / voice-agent-3")
    view = story.get("/sidecar/v1/alerts")
    assert [f["member"] for f in view["firing"]] == ["voice-agent-3"]
    shown = {r[0]: r for r in rows(page, "table:has(caption:text-is('Checks'))")}
    assert set(shown) == {c["check"] for c in view["checks"]}
    nightly = next(c for c in view["checks"] if c["check"] == "nightly-eval")
    assert shown["nightly-eval"][2] == "Up" and shown["nightly-eval"][3] == when(nightly["last_seen"])
    assert (shown["nightly-eval"][4], shown["nightly-eval"][5]) == ("1d", "1h 00m")
    screenshot(page, "alerts")


def test_sessions_filters_go_to_the_api_and_the_url(story: Story, open_page: Any) -> None:
    page = open_page(story, "/ui/sessions")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/sidecar/v1/sessions?" in r.url else None)
    page.get_by_label("App", exact=True).fill("voice-agent")
    page.get_by_label("State").select_option("open")
    page.get_by_label("Order").select_option("cost")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(f"{story.url}/ui/sessions?app=voice-agent&state=open&order=cost&limit=50")
    voice = [
        s
        for s in story.get("/sidecar/v1/sessions", limit=1000, order="cost")["sessions"]
        if s["app"] == "voice-agent"
    ]
    expect(page.locator("a.sid")).to_have_text([s["session_id"] for s in voice])
    assert any("app=voice-agent" in u and "state=open" in u and "order=cost" in u for u in asked)


def test_sessions_pages_with_the_api_cursor(story: Story, open_page: Any) -> None:
    def first_page_says_more(route: Any) -> None:  # a list with a next page, as R-RS-2 answers
        # The made-up cursor is not one the API accepts (400): the second page is asked without it.
        answer = route.fetch(url=route.request.url.replace("&cursor=c2-opaque", ""))
        doc = answer.json()
        doc["next_cursor"] = None if "cursor=" in route.request.url else "c2-opaque"
        route.fulfill(response=answer, json=doc)

    page = open_page(story, "/ui/")
    page.route("**/sidecar/v1/sessions?*", first_page_says_more)
    page.goto(f"{story.url}/ui/sessions?limit=25")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/sidecar/v1/sessions?" in r.url else None)
    page.get_by_role("link", name="Next page →").click()
    expect(page).to_have_url(f"{story.url}/ui/sessions?limit=25&cursor=c2-opaque")
    expect(page.get_by_role("link", name="← First page")).to_be_visible()
    expect(page.get_by_role("link", name="Next page →")).to_have_count(0)
    assert any("cursor=c2-opaque" in u and "limit=25" in u for u in asked)
    page.get_by_role("link", name="← First page").click()
    expect(page).to_have_url(f"{story.url}/ui/sessions?limit=25")
