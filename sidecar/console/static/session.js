// /ui/sessions/{id} — one session: totals, budget use against its app's ceilings, block / unblock, the
// waterfall of its calls and tool runs, per-tool figures and every call (SPEC R-UI-2).
import { ApiError, api, seg } from "./api.js";
import { badge, card, h, meter, table, update } from "./dom.js";
import { int, pct, secs, timeOfDay, tokens, usd, when } from "./format.js";
import { legend, waterfall } from "./waterfall.js";

function header(doc) {
  return [
    h("p", { class: "crumbs" }, h("a", { href: "/ui/sessions" }, "Sessions"), " / "),
    h("h1", { class: "mono-title" }, doc.session_id),
    h("p", { class: "meta" },
      doc.open ? badge("Open", "on") : badge("Closed", "off"),
      h("span", null, "App ", h("strong", null, doc.app)),
      h("span", null, `Session from ${doc.session_source}`),
      h("span", null, `Started ${when(doc.started_at_ts)}`),
      h("span", null, `Last seen ${when(doc.last_seen_at_ts)}`),
      h("span", null, `Duration ${secs(doc.duration_s)}`)),
  ];
}

function totals(doc) {
  return h("div", { class: "cards" },
    card("Cost", usd(doc.cost_usd), doc.unpriced_calls ? `${int(doc.unpriced_calls)} unpriced calls` : null),
    card("Model calls", int(doc.model_calls), doc.retries ? `${int(doc.retries)} retries` : null),
    card("Tool calls", int(doc.tool_calls)),
    card("Tokens", int(tokens(doc)), "all buckets"),
    card("Model time", secs(doc.model_time_s)),
    card("Tool time", secs(doc.tool_time_s)),
    card("Cache hit ratio", pct(doc.cache_hit_ratio)),
    card("Cache savings", usd(doc.cache_savings_usd)),
    card("Cache misses", int(doc.cache_misses), missSummary(doc.cache_misses_by_reason)),
    card("Cache-miss cost", usd(doc.cache_miss_cost_usd), "paid again for cached prefixes"),
    card("Errors", int(doc.error_calls)));
}

function buckets(doc) {
  const rows = [["Input (uncached)", doc.input_tokens], ["Output", doc.output_tokens],
    ["Cache read", doc.cache_read_input_tokens], ["Cache write", doc.cache_creation_input_tokens]];
  const spent = doc.duration_s || 0;
  const other = Math.max(0, spent - doc.model_time_s - doc.tool_time_s);
  const parts = [["Model", doc.model_time_s, "split-model"], ["Tools", doc.tool_time_s, "split-tool"],
    ["Client and idle", other, "split-other"]];
  const whole = parts.reduce((a, p) => a + p[1], 0) || 1;
  const bar = h("div", { class: "split", "aria-hidden": "true" }, parts.map(([, v, cls]) => {
    const el = h("span", { class: cls });
    el.style.width = `${((v / whole) * 100).toFixed(2)}%`;
    return el;
  }));
  return [
    table([{ label: "Bucket", cell: (r) => r[0] }, { label: "Tokens", num: true, cell: (r) => int(r[1]) }], rows,
      { caption: "Tokens by bucket" }),
    h("h2", { class: "caption spaced" }, "Where the time went"), bar,
    h("ul", { class: "split-legend" }, parts.map(([label, v, cls]) =>
      h("li", null, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), `${label} ${secs(v)}`))),
  ];
}

function budgetPanel(doc, budget) {
  if (budget instanceof Error) return h("p", { class: "error" }, `Budget unavailable: ${budget.message}`);
  const l = budget.limits;
  return [
    h("h2", { class: "caption" }, "Budget use"),
    h("p", { class: "muted" }, `Ceilings of app ${doc.app} (mode ${l.mode}).`,
      budget.blocked ? [" ", badge("App blocked", "bad")] : null),
    meter("Session cost", doc.cost_usd, l.session_max_usd, usd),
    meter("Session tokens", tokens(doc), l.session_max_tokens, int),
    meter("Model calls", doc.model_calls, l.session_max_model_calls, int),
    meter("Tool calls", doc.tool_calls, l.session_max_tool_calls, int),
    meter("App today (UTC)", budget.used_usd_today, l.app_max_usd_per_day, usd),
  ];
}

// Why a prefix was paid again, in plain words (SPEC R-CD-1's reasons), before the diagnosis's own detail.
const WHY = {
  ttl_expired: "The cached prefix had expired",
  model_changed: "Another model (each model has its own cache)",
  system_changed: "The system prompt changed",
  tools_changed: "The tool definitions changed",
  messages_changed: "An earlier message changed",
  breakpoint_moved: "The cache breakpoints moved",
  evicted: "Same prefix within its lifetime, dropped by the API",
};

/** "system_changed 2 · evicted 1" from the session's {reason: misses}. */
const missSummary = (byReason) => Object.entries(byReason || {}).sort((a, b) => b[1] - a[1])
  .map(([reason, n]) => `${reason} ${int(n)}`).join(" · ") || null;

function cacheCell(c) {
  if (!c.cache_outcome) return "—";
  const api = c.api_cache_miss_reason ? h("div", { class: "detail" }, `The API says: ${c.api_cache_miss_reason}`) : null;
  if (c.cache_outcome !== "miss") return [h("span", { class: `cache-${c.cache_outcome}` }, c.cache_outcome), api];
  const why = WHY[c.cache_miss_reason] || "The prefix changed";
  const paid = c.cache_missed_tokens ? `; ${int(c.cache_missed_tokens)} cached tokens paid again` : "";
  return [h("span", { class: "cache-miss" }, `miss: ${c.cache_miss_reason || "unknown"}`),
    ` · ${usd(c.cache_miss_cost_usd)} lost`,
    h("div", { class: "detail" }, `${why}${paid}.`),
    c.cache_miss_detail ? h("div", { class: "detail" }, c.cache_miss_detail) : null, api];
}

function callsTable(calls) {
  const agents = calls.some((c) => c.agent_id);
  const rows = calls.map((c, i) => ({ ...c, n: i + 1 }));
  return table([
    { label: "#", num: true, cell: (c) => int(c.n) },
    { label: "Started", cell: (c) => timeOfDay(c.started_at_ts) },
    agents ? { label: "Agent", cell: (c) => c.agent_id || "main" } : null,
    { label: "Model", cell: (c) => [c.operation && c.operation !== "chat" ? c.operation : c.model || "—",
      h("span", { class: "detail" }, c.stream ? " · stream" : " · JSON")] },
    { label: "Status", cell: (c) => [[c.status || c.outcome, c.stop_reason || c.error_type,
      c.outcome === "cache_hit" ? "response cache" : null].filter(Boolean).join(" · "),
      (c.tool_uses || []).length ? h("div", { class: "detail" }, `asks ${c.tool_uses.join(", ")}`) : null] },
    { label: "TTFT", num: true, cell: (c) => secs(c.ttft_s) },
    { label: "Duration", num: true, cell: (c) => secs(c.duration_s) },
    { label: "Input", num: true, cell: (c) => int(c.input_tokens) },
    { label: "Output", num: true, cell: (c) => int(c.output_tokens) },
    { label: "Cache read", num: true, cell: (c) => int(c.cache_read_input_tokens) },
    { label: "Cache write", num: true, cell: (c) => int(c.cache_creation_input_tokens) },
    { label: "Cost", num: true, cell: (c) => usd(c.cost_usd) },
    { label: "Cache", wrap: true, wide: true, cell: cacheCell }, // last: it takes the width left
  ].filter(Boolean), rows, { caption: `Calls (${int(calls.length)})`, empty: "No calls." });
}

function toolsTable(tools) {
  const rows = Object.entries(tools || {}).map(([name, t]) => ({ name, ...t }));
  return table([
    { label: "Tool", cell: (t) => t.name },
    { label: "Calls", num: true, cell: (t) => int(t.count) },
    { label: "Errors", num: true, cell: (t) => int(t.errors) },
    { label: "p50", num: true, cell: (t) => secs(t.p50_s) },
    { label: "p95", num: true, cell: (t) => secs(t.p95_s) },
    { label: "Total", num: true, cell: (t) => secs(t.total_s) },
  ], rows, { caption: "Tools", empty: "No tool calls." });
}

function blockControls(id, refresh) {
  const status = h("span", { class: "action-status", role: "status" });
  const act = (op) => async () => {
    status.textContent = "…";
    try {
      const r = await api(`/sidecar/v1/sessions/${seg(id)}/${op}`, { method: "POST" });
      status.textContent = r.blocked
        ? "Blocked: its next calls are refused (429, limit “blocked”)."
        : "Not blocked: its calls go through (within its ceilings).";
    } catch (err) {
      status.textContent = `Failed: ${err.message}`;
    }
    refresh();
  };
  return h("div", { class: "actions" },
    h("button", { type: "button", class: "danger", on: { click: act("block") } }, "Block session"),
    h("button", { type: "button", on: { click: act("unblock") } }, "Unblock session"), status);
}

export function mount(main, ctx) {
  const id = ctx.params[0];
  const head = h("div", { class: "page-head" });
  const top = h("div");
  const side = h("div", { class: "grid2" });
  const chart = h("div", { class: "chart" });
  const rest = h("div");
  let last = null;
  let lastKey = null;
  main.append(head, blockControls(id, ctx.refresh), top, side,
    h("section", { class: "panel" }, h("h2", { class: "caption" }, "Waterfall"), legend(), chart), rest);
  let width = 0;
  const draw = () => {
    const focused = [...chart.querySelectorAll("g.row")].indexOf(document.activeElement);
    width = chart.clientWidth;
    chart.replaceChildren(waterfall(last.calls || [], width));
    if (focused >= 0) chart.querySelectorAll("g.row")[focused]?.focus();
  };
  const resized = new ResizeObserver(() => { if (last && Math.abs(chart.clientWidth - width) > 4) draw(); });
  resized.observe(chart);
  return {
    title: `Session ${id}`,
    unmount: () => resized.disconnect(),
    async refresh() {
      let doc;
      try {
        doc = await api(`/sidecar/v1/sessions/${seg(id)}`);
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 404) throw err;
        update(head, "404", () => [h("h1", null, "Unknown session"), h("p", null, `No calls recorded for session “${id}”. `, h("a", { href: "/ui/sessions" }, "All sessions"))]);
        return;
      }
      const budget = await api(`/sidecar/v1/apps/${seg(doc.app)}/budget`).catch((err) => err);
      const key = JSON.stringify(doc);
      update(head, key, () => header(doc));
      update(top, key, () => totals(doc));
      update(side, key + JSON.stringify(budget), () => [
        h("section", { class: "panel" }, budgetPanel(doc, budget)), h("section", { class: "panel" }, buckets(doc))]);
      if (key !== lastKey) { // the chart first: measuring its width then lays out less of the page
        lastKey = key;
        last = doc;
        draw();
      }
      update(rest, key, () => [h("section", { class: "panel" }, toolsTable(doc.tools)),
        h("section", { class: "panel table-wrap" }, callsTable(doc.calls || []),
          (doc.calls || []).length < doc.model_calls ? h("p", { class: "muted" }, "Showing the first calls of a long session.") : null)]);
    },
  };
}
