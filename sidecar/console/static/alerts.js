// /ui/alerts — dead-man checks and check-ins: what is firing, every check's state, snoozes and
// maintenance (SPEC R-UI-2, R-DM-1..2).
import { api, seg } from "./api.js";
import { badge, h, table, update } from "./dom.js";
import { int, secs, when } from "./format.js";

const SNOOZES = [["1h", "1 hour"], ["4h", "4 hours"], ["1d", "1 day"], ["7d", "7 days"]];

const STATES = { up: "on", started: "on", down: "bad", late: "warn", new: "off", paused: "off" };

function statusBadge(c) {
  if (c.firing) return badge("Firing", "bad");
  if (c.members_watched !== undefined) {
    const down = c.members_down || 0;
    return badge(`${int(c.members_watched - down)} of ${int(c.members_watched)} members up`, down ? "bad" : "on");
  }
  const word = c.status || "—";
  return badge(word[0].toUpperCase() + word.slice(1), STATES[c.status] || "off");
}

function snoozeControl(check, muted, act, choices) {
  if (muted) return h("button", { type: "button", dataset: { focus: `unsnooze:${check}` }, on: { click: act(check, "DELETE") } }, "Unsnooze");
  const select = h("select", { "aria-label": `Snooze ${check} for`, dataset: { focus: `for:${check}` } },
    SNOOZES.map(([v, t]) => h("option", { value: v, selected: v === choices.get(check) }, t)));
  select.addEventListener("change", () => choices.set(check, select.value));
  return h("span", { class: "row-actions" }, select,
    h("button", { type: "button", dataset: { focus: `snooze:${check}` }, on: { click: () => act(check, "POST", select.value)() } }, "Snooze"));
}

function render(doc, act, choices) {
  const firing = doc.firing.length
    ? h("ul", { class: "firing" }, doc.firing.map((f) => h("li", null, badge("Firing", "bad"), " ",
      h("strong", null, f.member ? `${f.check} / ${f.member}` : f.check),
      ` since ${when(f.fired_at || f.since)}`, f.detail ? ` — ${f.detail}` : "")))
    : h("p", { class: "ok-line" }, badge("Nothing firing", "on"));
  const checks = table([
    { label: "Check", cell: (c) => c.check },
    { label: "Kind", cell: (c) => c.kind + (c.fleet ? ` (${c.fleet})` : "") + (c.dynamic ? ", from check-ins" : "") },
    { label: "State", cell: statusBadge },
    { label: "Last seen", cell: (c) => (c.last_seen ? when(c.last_seen) : "—") },
    { label: "Period", num: true, cell: (c) => (c.period_s ? secs(c.period_s) : "—") },
    { label: "Grace", num: true, cell: (c) => secs(c.grace_s) },
    { label: "Misses", num: true, cell: (c) => int(c.misses) },
    { label: "Detail", wrap: true, cell: (c) => c.detail || "—" },
    { label: "Snooze", cell: (c) => snoozeControl(c.check, c.muted, act, choices) },
  ], doc.checks, { caption: "Checks", empty: "No checks configured. Check-ins create them: POST /sidecar/v1/checkins/NAME" });
  const snoozes = table([
    { label: "Scope", cell: (z) => (z.scope === "*" ? "everything (maintenance)" : z.scope) },
    { label: "Until", cell: (z) => when(z.until) },
    { label: "Reason", cell: (z) => z.reason || "—" },
  ], doc.snoozes, { caption: "Snoozes and maintenance", empty: "None." });
  return [h("section", { class: "panel" }, h("h2", { class: "caption" }, "Firing now"), firing),
    h("section", { class: "panel table-wrap" }, checks), h("section", { class: "panel" }, snoozes)];
}

export function mount(main, ctx) {
  const body = h("div");
  const flash = h("p", { class: "action-status", role: "status" });
  const choices = new Map(); // snooze lengths picked but not applied yet survive live updates
  const act = (check, method, length) => async () => {
    try {
      await api(`/sidecar/v1/alerts/${seg(check)}/snooze`, { method, query: length ? { for: length } : undefined });
      flash.textContent = method === "POST" ? `${check} snoozed for ${length}.` : `${check} unsnoozed.`;
    } catch (err) {
      flash.textContent = `${check}: ${err.message}`;
    }
    ctx.refresh();
  };
  const maintenance = (method) => async () => {
    try {
      await api("/sidecar/v1/maintenance", { method, query: method === "POST" ? { for: "1h" } : undefined });
      flash.textContent = method === "POST" ? "Maintenance: every check muted for 1 hour." : "Maintenance ended.";
    } catch (err) {
      flash.textContent = err.message;
    }
    ctx.refresh();
  };
  main.append(h("div", { class: "page-head" }, h("h1", null, "Alerts"),
    h("p", { class: "muted" }, "Dead-man checks: scheduled jobs checking in, fleets and the traffic itself going silent.")),
  h("div", { class: "actions" },
    h("button", { type: "button", on: { click: maintenance("POST") } }, "Start 1 h maintenance"),
    h("button", { type: "button", on: { click: maintenance("DELETE") } }, "End maintenance"), flash),
  body);
  return {
    title: "Alerts",
    async refresh() {
      const doc = await api("/sidecar/v1/alerts");
      update(body, JSON.stringify(doc), () => render(doc, act, choices));
    },
  };
}
