// /ui/sessions — the sessions list of SPEC R-RS-2: sort, filter, page. The page's own URL holds the
// filters, the order and the cursor, so any view can be shared. Arrow keys move between rows.
import { api, seg } from "./api.js";
import { badge, field, h, table, update } from "./dom.js";
import { int, pct, secs, tokens, usd, when } from "./format.js";

const RANGES = [["1h", "Last hour", 3600], ["24h", "Last 24 hours", 86400], ["7d", "Last 7 days", 604800],
  ["30d", "Last 30 days", 2592000]];
const LIMITS = ["25", "50", "100", "200"];
const FILTERS = ["q", "app", "model", "state", "min_cost_usd", "range"];

/** Session ids link to their page; only one link is a tab stop (roving tabindex). */
function columns(order, sortHref) {
  const sortable = (label, key) => ({
    head: h("a", { href: sortHref(key), class: "sort", title: `Sort by ${label.toLowerCase()}` },
      label, order === key ? h("span", { "aria-hidden": "true" }, " ▼") : null),
    ariaSort: order === key ? "descending" : null,
  });
  return [
    { label: "Session", cell: (x) => h("a", { href: `/ui/sessions/${seg(x.session_id)}`, class: "sid", dataset: { sid: x.session_id, focus: x.session_id }, tabindex: -1 }, x.session_id) },
    { label: "App", cell: (x) => x.app },
    { label: "Last seen", ...sortable("Last seen", "recent"), cell: (x) => when(x.last_seen_at_ts) },
    { label: "Duration", num: true, ...sortable("Duration", "duration"), cell: (x) => secs(x.duration_s) },
    { label: "Model calls", num: true, ...sortable("Model calls", "calls"), cell: (x) => int(x.model_calls) },
    { label: "Tool calls", num: true, cell: (x) => int(x.tool_calls) },
    { label: "Tokens", num: true, ...sortable("Tokens", "tokens"), cell: (x) => int(tokens(x)) },
    { label: "Cost", num: true, ...sortable("Cost", "cost"), cell: (x) => usd(x.cost_usd) },
    { label: "Model time", num: true, cell: (x) => secs(x.model_time_s) },
    { label: "Tool time", num: true, ...sortable("Tool time", "tool_time"), cell: (x) => secs(x.tool_time_s) },
    { label: "Cache hit", num: true, cell: (x) => pct(x.cache_hit_ratio) },
    { label: "Errors", num: true, cell: (x) => int(x.error_calls) },
    { label: "State", cell: (x) => (x.open ? badge("Open", "on") : badge("Closed", "off")) },
  ];
}

/** The filters again in the browser, for a sidecar whose list does not filter yet (harmless otherwise). */
function keep(x, f, since) {
  return (!f.app || x.app === f.app) && (!f.state || (f.state === "open") === x.open)
    && (!f.q || x.session_id.startsWith(f.q)) && (!f.min_cost_usd || x.cost_usd >= Number(f.min_cost_usd))
    && (!f.model || !x.models || x.models.includes(f.model)) && x.last_seen_at_ts >= since;
}

function filterForm(f, order, limit, go) {
  const input = (name, label, attrs) => field(label, h("input", { name, value: f[name] || "", ...attrs }));
  const select = (name, label, options, value) => field(label,
    h("select", { name }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter sessions" },
    input("q", "Session id starts with", { type: "search", id: "filter-q", placeholder: "press / to search" }),
    input("app", "App", { type: "text" }),
    input("model", "Model", { type: "text" }),
    select("state", "State", [["", "Open or closed"], ["open", "Open"], ["closed", "Closed"]], f.state || ""),
    input("min_cost_usd", "Min cost ($)", { type: "number", min: 0, step: "any", inputmode: "decimal" }),
    select("range", "Seen", RANGES.map(([v, text]) => [v, text]), f.range || "7d"),
    select("order", "Order", [["recent", "Last seen"], ["cost", "Cost"], ["tokens", "Tokens"],
      ["calls", "Model calls"], ["duration", "Duration"], ["tool_time", "Tool time"]], order),
    select("limit", "Rows", LIMITS.map((v) => [v, v]), limit),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("a", { href: "/ui/sessions", class: "button" }, "Reset"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v && !(k === "range" && v === "7d")) params.set(k, v);
    go(`/ui/sessions${params.size ? `?${params}` : ""}`);
  });
  return form;
}

/** Arrow keys, Home, End, Page Up/Down move focus between the session links of the table. */
function rovingKeys(container) {
  container.addEventListener("keydown", (ev) => {
    const links = [...container.querySelectorAll("a.sid")];
    const i = links.indexOf(document.activeElement);
    if (i < 0) return;
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: links.length - 1, PageDown: i + 10, PageUp: i - 10 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    focusRow(links, Math.max(0, Math.min(links.length - 1, to)));
  });
  container.addEventListener("focusin", (ev) => {
    if (ev.target.matches("a.sid")) focusRow([...container.querySelectorAll("a.sid")], null, ev.target);
  });
}

function focusRow(links, index, link = links[index]) {
  for (const a of links) a.tabIndex = a === link ? 0 : -1;
  if (document.activeElement !== link) link.focus();
}

export function mount(main, ctx) {
  const q = ctx.query;
  const f = Object.fromEntries(FILTERS.map((k) => [k, q.get(k) || ""]));
  const order = q.get("order") || "recent";
  const limit = LIMITS.includes(q.get("limit")) ? q.get("limit") : "50";
  const cursor = q.get("cursor") || "";
  const hrefWith = (changes) => {
    const p = new URLSearchParams(q);
    for (const [k, v] of Object.entries(changes)) (v ? p.set(k, v) : p.delete(k));
    return `/ui/sessions${p.size ? `?${p}` : ""}`;
  };
  const body = h("div", { class: "panel table-wrap" });
  const footer = h("div", { class: "pager" });
  rovingKeys(body);
  main.append(h("div", { class: "page-head" }, h("h1", null, "Sessions"),
    h("p", { class: "muted" }, "Every call belongs to a session. Arrow keys move between rows; Enter opens one.")),
  filterForm(f, order, limit, ctx.go), body, footer);
  const onSlash = (ev) => {
    if (ev.key === "/" && !ev.target.closest("input, select, textarea")) {
      ev.preventDefault();
      document.getElementById("filter-q")?.focus();
    }
  };
  document.addEventListener("keydown", onSlash);
  const seconds = (RANGES.find(([v]) => v === (f.range || "7d")) || RANGES[2])[2];

  return {
    title: "Sessions",
    unmount: () => document.removeEventListener("keydown", onSlash),
    async refresh() {
      const since = Math.floor(Date.now() / 1000) - seconds;
      const query = { limit, order, since, cursor, ...f, range: null };
      const doc = await api("/sidecar/v1/sessions", { query });
      const rows = doc.sessions.filter((x) => keep(x, f, since));
      const changed = update(body, JSON.stringify(rows), () =>
        table(columns(order, (key) => hrefWith({ order: key, cursor: null })), rows, {
          caption: `${int(rows.length)} session${rows.length === 1 ? "" : "s"}${cursor ? " (later page)" : ""}`,
          empty: "No sessions match.",
        }));
      const links = [...body.querySelectorAll("a.sid")];
      if (changed && links.length && !links.some((a) => a.tabIndex === 0)) links[0].tabIndex = 0;
      update(footer, `${cursor}|${doc.next_cursor}`, () => [
        cursor ? h("a", { href: hrefWith({ cursor: null }), class: "button" }, "← First page") : null,
        doc.next_cursor ? h("a", { href: hrefWith({ cursor: doc.next_cursor }), class: "button" }, "Next page →") : null,
      ]);
    },
  };
}
