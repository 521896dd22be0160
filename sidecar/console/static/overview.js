// /ui/ — spend today and over 7 days by app and model, burn rate, cache, errors, latency, rate-limit
// headroom (SPEC R-UI-2). Reads GET /sidecar/v1/summary (R-RS-3); a sidecar without that endpoint gets
// the same page aggregated from the sessions list, and says so.
import { api, staleness, summary, summaryRows } from "./api.js";
import { card, h, table, update } from "./dom.js";
import { int, pct, secs, usd, when } from "./format.js";

const HOUR_S = 3600;
const WEEK_S = 7 * 86400;
const FALLBACK_LIMIT = 1000;
const FULL_EVERY_MS = 30_000; // sliding windows (last hour, today) move even without new calls

function localMidnight(now) {
  const d = new Date(now * 1000);
  d.setHours(0, 0, 0, 0);
  return Math.floor(d.getTime() / 1000);
}

function hitRatio(t) {
  const all = t.input_tokens + t.cache_read_input_tokens + t.cache_creation_input_tokens;
  return all ? t.cache_read_input_tokens / all : null;
}

const mostUsedFirst = (a, b) => (b.utilization ?? -1) - (a.utilization ?? -1);

/** Totals.cache_misses_by_reason ({reason: {misses, cost_usd}}, SPEC R-CD-3): the costliest first. */
const missRows = (byReason) => Object.entries(byReason)
  .map(([reason, m]) => ({ reason, misses: m.misses, cost: m.cost_usd }))
  .sort((a, b) => b.cost - a.cost || b.misses - a.misses);

/** Summary.ratelimit (Headroom rows, SPEC R-RL-1): API-key limits by `type`, subscription windows by
 * `window` with their `status`; the most used first. */
const limitRows = (headroom) => [...headroom].sort(mostUsedFirst);

async function fromSummary(now) {
  const week = await summary({ since: now - WEEK_S, group_by: "app" });
  if (!week) return null;
  const [today, models, hour] = await Promise.all([
    summary({ since: localMidnight(now), group_by: "app" }),
    summary({ since: now - WEEK_S, group_by: "model" }),
    summary({ since: now - HOUR_S }),
  ]);
  const t = week.totals;
  const todayBy = new Map(summaryRows(today).map((r) => [r.key, r.cost_usd]));
  return {
    note: null,
    today: today.totals.cost_usd, week: t.cost_usd, burn: hour.totals.cost_usd,
    calls: t.model_calls, errors: t.error_calls, p95: t.duration_p95_s, ttftP95: t.ttft_p95_s,
    hit: t.cache_hit_ratio, savings: t.cache_savings_usd, missCost: t.cache_miss_cost_usd,
    apps: summaryRows(week).map((r) => ({
      key: r.key, today: todayBy.get(r.key) || 0, week: r.cost_usd, calls: r.model_calls, errors: r.error_calls,
    })),
    models: summaryRows(models).map((r) => ({
      key: r.key, week: r.cost_usd, calls: r.model_calls, p95: r.duration_p95_s, ttft: r.ttft_p95_s,
    })),
    misses: missRows(t.cache_misses_by_reason),
    limits: limitRows(week.ratelimit || []),
  };
}

/** Fallback: sessions last seen in the window, each counted whole on the day it was last seen. */
async function fromSessions(now) {
  const doc = await api("/sidecar/v1/sessions", {
    query: { limit: FALLBACK_LIMIT, order: "recent", since: now - WEEK_S },
  });
  const list = doc.sessions.filter((x) => x.last_seen_at_ts >= now - WEEK_S);
  const midnight = localMidnight(now);
  const t = { today: 0, week: 0, burn: 0, calls: 0, errors: 0, savings: 0 };
  const tokens = { input_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
  const apps = new Map();
  for (const x of list) {
    const a = apps.get(x.app) || { key: x.app, today: 0, week: 0, calls: 0, errors: 0 };
    const isToday = x.last_seen_at_ts >= midnight;
    a.week += x.cost_usd; a.calls += x.model_calls; a.errors += x.error_calls;
    a.today += isToday ? x.cost_usd : 0;
    apps.set(x.app, a);
    t.week += x.cost_usd; t.calls += x.model_calls; t.errors += x.error_calls; t.savings += x.cache_savings_usd;
    t.today += isToday ? x.cost_usd : 0;
    t.burn += x.last_seen_at_ts >= now - HOUR_S ? x.cost_usd : 0;
    for (const k of Object.keys(tokens)) tokens[k] += x[k];
  }
  const capped = doc.sessions.length >= FALLBACK_LIMIT ? ` (the ${int(FALLBACK_LIMIT)} most recent)` : "";
  return {
    note: `This sidecar has no summary endpoint: figures are added up from ${int(list.length)} sessions${capped}, `
      + "each counted on the day it was last seen; latency, per-model and rate-limit figures need the summary.",
    ...t, p95: null, ttftP95: null, hit: hitRatio(tokens), missCost: null,
    apps: [...apps.values()].sort((a, b) => b.week - a.week), models: null, misses: null, limits: null,
  };
}

function render(o) {
  const errRate = o.calls ? o.errors / o.calls : null;
  const cards = h("div", { class: "cards" },
    card("Spend today", usd(o.today), "since local midnight"),
    card("Spend 7 days", usd(o.week)),
    card("Burn rate", o.burn === null ? "—" : `${usd(o.burn)}/h`, "last hour"),
    card("Model calls", int(o.calls), "7 days"),
    card("Errors", int(o.errors), errRate === null ? "7 days" : `${pct(errRate)} of calls`),
    card("p95 latency", secs(o.p95), o.ttftP95 === null ? "7 days" : `TTFT p95 ${secs(o.ttftP95)}`),
    card("Cache hit ratio", pct(o.hit), "cache reads / input"),
    card("Cache savings", usd(o.savings), "net of write premiums"),
    card("Cache-miss cost", usd(o.missCost), "paid again for cached prefixes"));
  const apps = table([
    { label: "App", cell: (r) => r.key },
    { label: "Today", num: true, cell: (r) => usd(r.today) },
    { label: "7 days", num: true, cell: (r) => usd(r.week) },
    { label: "Model calls", num: true, cell: (r) => int(r.calls) },
    { label: "Errors", num: true, cell: (r) => int(r.errors) },
  ], o.apps, { caption: "Spend by app", empty: "No calls in the last 7 days." });
  const models = o.models ? table([
    { label: "Model", cell: (r) => r.key },
    { label: "7 days", num: true, cell: (r) => usd(r.week) },
    { label: "Model calls", num: true, cell: (r) => int(r.calls) },
    { label: "p95 latency", num: true, cell: (r) => secs(r.p95) },
    { label: "p95 TTFT", num: true, cell: (r) => secs(r.ttft) },
  ], o.models, { caption: "Spend by model", empty: "No calls in the last 7 days." })
    : unavailable("Spend by model");
  const misses = o.misses ? table([
    { label: "Reason", cell: (r) => r.reason },
    { label: "Misses", num: true, cell: (r) => int(r.misses) },
    { label: "Cost", num: true, cell: (r) => usd(r.cost) },
  ], o.misses, { caption: "Cache misses by reason", empty: "No cache misses." })
    : unavailable("Cache misses by reason");
  const limits = o.limits ? table([
    { label: "App", cell: (r) => r.app },
    { label: "Key", cell: (r) => r.key },
    { label: "Limit", cell: (r) => (r.window ? `${r.window} window` : r.type) },
    { label: "Remaining", num: true, cell: (r) => (r.window ? r.status || "—" : `${int(r.remaining)} of ${int(r.limit)}`) },
    { label: "Used", num: true, cell: (r) => pct(r.utilization) },
    { label: "Resets", cell: (r) => when(r.reset) },
  ], o.limits, { caption: "Rate-limit headroom", empty: "No rate-limit headers seen yet." })
    : unavailable("Rate-limit headroom");
  return [
    o.note ? h("p", { class: "notice", role: "note" }, o.note) : null,
    cards,
    h("div", { class: "grid2" }, h("section", { class: "panel" }, apps), h("section", { class: "panel" }, models)),
    h("section", { class: "panel" }, misses),
    h("section", { class: "panel table-wrap" }, limits), // a row per limit of each app and key: the full width
  ];
}

const unavailable = (caption) =>
  h("div", { class: "unavailable" }, h("h2", { class: "caption" }, caption),
    h("p", { class: "muted" }, "Needs the summary endpoint (GET /sidecar/v1/summary)."));

export function mount(main) {
  const body = h("div", { class: "overview" });
  const traffic = staleness(FULL_EVERY_MS);
  main.append(h("div", { class: "page-head" }, h("h1", null, "Overview"),
    h("p", { class: "muted" }, "All apps on this sidecar, last 7 days")), body);
  return {
    title: "Overview",
    async refresh() {
      const { stale, done } = await traffic.check(); // the summaries only when a call came in
      if (!stale) return;
      const now = Math.floor(Date.now() / 1000);
      const o = (await fromSummary(now)) || (await fromSessions(now));
      update(body, JSON.stringify(o), () => render(o));
      done();
    },
  };
}
