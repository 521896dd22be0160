// The session waterfall (SPEC R-UI-2): one time axis; per call a row with the tool executions its request
// carried results for (the gaps measured on the wire: from the last byte of the answer that asked for the
// tool to the arrival of the request with its result), then the model call as time to first token and
// generation. Rows are grouped in lanes per agent when calls carry Claude Code's agent ids. Hover or focus
// a row for its tokens by bucket, cost, cache outcome and miss reason; arrow keys move between rows.
import { h, s } from "./dom.js";
import { int, secs, usd, when } from "./format.js";

const LABEL_W = 220;
const PAD_R = 16;
const AXIS_H = 26;
const LANE_H = 26;
const ROW_H = 26;
const BAR_H = 14;

const failed = (c) => c.status >= 400 || (c.outcome && c.outcome !== "ok" && c.outcome !== "cache_hit");
const fromCache = (c) => c.outcome === "cache_hit"; // answered by the response cache: no model call

/** Rows (a call and the tool runs it carried results for), in lanes per agent when agents are known. */
function layout(calls) {
  const rows = calls.map((c, i) => ({
    c, n: i + 1, start: c.started_at_ts, end: c.started_at_ts + (c.duration_s || 0),
    tools: (c.tool_results || []).map((r) => ({ r, start: c.started_at_ts - r.latency_s, end: c.started_at_ts })),
  }));
  if (!calls.some((c) => c.agent_id)) return [{ label: null, rows }];
  const lanes = new Map();
  for (const row of rows) {
    const id = row.c.agent_id || "";
    if (!lanes.has(id)) lanes.set(id, { id, parent: row.c.parent_agent_id || null, rows: [] });
    lanes.get(id).rows.push(row);
  }
  return [...lanes.values()].map((l) => ({
    label: l.id ? `Agent ${l.id}${l.parent ? ` · sub-agent of ${l.parent}` : ""}` : "Main agent",
    rows: l.rows,
  }));
}

function ticks(span, px) {
  const raw = span / Math.max(2, Math.floor(px / 110));
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  const out = [];
  for (let i = 0; i * step <= span * 1.0001; i++) out.push(i * step);
  const digits = step < 0.1 ? 2 : 1;
  const label = (t) => (t < 1 && step < 1 ? `${Math.round(t * 1000)} ms`
    : t < 120 ? `${+t.toFixed(digits)} s` : `${+(t / 60).toFixed(1)} min`);
  return out.map((t) => [t, label(t)]);
}

const shortLabel = (text, max) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

function rowLabel(row) {
  const c = row.c;
  const what = c.operation && c.operation !== "chat" ? c.operation : c.model || "unknown model";
  const flag = c.outcome === "refused" ? " · refused" : fromCache(c) ? " · response cache"
    : failed(c) ? ` · error ${c.status || c.outcome}` : "";
  return `#${row.n} ${what}${flag}`;
}

function cacheText(c) {
  if (!c.cache_outcome) return null;
  let text = c.cache_outcome;
  if (c.cache_miss_reason) text += ` — ${c.cache_miss_reason}`;
  if (c.cache_miss_detail) text += `: ${c.cache_miss_detail}`;
  if (c.cache_miss_cost_usd) text += ` (lost ${usd(c.cache_miss_cost_usd)})`;
  if (c.api_cache_miss_reason) text += ` · API: ${c.api_cache_miss_reason}`;
  return text;
}

/** The plain-text summary of a row (its accessible name, and the tooltip's lines). */
function describe(row) {
  const c = row.c;
  const lines = [[rowLabel(row) + (c.stream ? " (stream)" : "")]];
  const add = (label, value) => lines.push([label, value]);
  add("Started", when(c.started_at_ts));
  if (c.agent_id) add("Agent", c.parent_agent_id ? `${c.agent_id} (sub-agent of ${c.parent_agent_id})` : c.agent_id);
  add("Status", [c.status || "no answer", c.stop_reason, c.error_type].filter(Boolean).join(" · "));
  if (c.stream && c.ttft_s !== null && c.ttft_s !== undefined) {
    add("Time", `TTFT ${secs(c.ttft_s)} · generation ${secs(c.duration_s - c.ttft_s)} · total ${secs(c.duration_s)}`);
  } else {
    add("Time", `${secs(c.duration_s)} (JSON answer, first byte after ${secs(c.ttft_s)})`);
  }
  add("Input tokens", int(c.input_tokens));
  add("Output tokens", int(c.output_tokens));
  add("Cache read", int(c.cache_read_input_tokens));
  add("Cache write", int(c.cache_creation_input_tokens));
  add("Cost", usd(c.cost_usd));
  if (fromCache(c)) add("Response cache", `replayed an answer that cost ${usd(c.response_cache_savings_usd)}`);
  const cache = cacheText(c);
  if (cache) add("Cache", cache);
  for (const t of row.tools) add(`Tool ${t.r.name}`, `ran ${secs(t.r.latency_s)} before this call${t.r.is_error ? " · returned an error" : ""}`);
  if (c.tool_uses && c.tool_uses.length) add("Asked for tools", c.tool_uses.join(", "));
  return lines;
}

function toolLines(row, t) {
  return [[`Tool ${t.r.name}`], ["Ran", secs(t.r.latency_s)], ["Result", t.r.is_error ? "error" : "ok"],
    ["Measured", "from the answer that asked for it to the request carrying its result"],
    ["Carried by", `call #${row.n}`]];
}

function showTip(lines, x, y) {
  const tip = document.getElementById("tip");
  tip.replaceChildren(h("div", { class: "tip-title" }, lines[0][0]),
    h("dl", null, lines.slice(1).map(([k, v]) => [h("dt", null, k), h("dd", null, v)])));
  tip.hidden = false;
  const r = tip.getBoundingClientRect();
  tip.style.left = `${Math.max(8, Math.min(x + 14, innerWidth - r.width - 8)) + scrollX}px`;
  tip.style.top = `${(y + 16 + r.height > innerHeight ? y - r.height - 12 : y + 16) + scrollY}px`;
}

const hideTip = () => { document.getElementById("tip").hidden = true; };

function barsOf(row, x, y) {
  const c = row.c;
  const out = [];
  const k = row.tools.length;
  row.tools.forEach((t, j) => {
    const hgt = BAR_H / Math.max(1, k);
    out.push(s("rect", {
      class: `bar-tool${t.r.is_error ? " bar-tool-error" : ""}`, x: x(t.start), y: y + (ROW_H - BAR_H) / 2 + j * hgt,
      width: Math.max(2, x(t.end) - x(t.start)), height: Math.max(2, hgt - (k > 1 ? 1 : 0)), dataset: { tool: j },
    }));
  });
  const top = y + (ROW_H - BAR_H) / 2;
  if (c.outcome === "refused") {
    const cx = x(row.start);
    out.push(s("path", { class: "bar-refused", d: `M${cx} ${top} l6 6 l-6 6 l-6 -6 z`, dataset: { call: "" } }));
    return out;
  }
  const bad = failed(c) ? " bar-failed" : "";
  // A JSON answer's tokens arrive together (its TTFT is its first byte): one bar, no split.
  const split = !c.stream || c.ttft_s === null || c.ttft_s === undefined ? row.start : Math.min(row.end, row.start + c.ttft_s);
  if (split > row.start) {
    out.push(s("rect", { class: `bar-ttft${bad}`, x: x(row.start), y: top, width: Math.max(1, x(split) - x(row.start)), height: BAR_H, dataset: { call: "" } }));
  }
  out.push(s("rect", { class: `bar-gen${bad}`, x: x(split), y: top, width: Math.max(2, x(row.end) - x(split)), height: BAR_H, dataset: { call: "" } }));
  return out;
}

/** The waterfall of `calls` (oldest first) as an SVG `width` pixels wide. */
export function waterfall(calls, width) {
  if (!calls.length) return h("p", { class: "muted" }, "No calls recorded.");
  const lanes = layout(calls);
  const all = lanes.flatMap((l) => l.rows);
  const t0 = Math.min(...all.map((r) => Math.min(r.start, ...r.tools.map((t) => t.start))));
  const span = Math.max(1e-3, Math.max(...all.map((r) => r.end)) - t0);
  const plot = Math.max(120, width - LABEL_W - PAD_R);
  const x = (t) => LABEL_W + ((t - t0) / span) * plot;
  const height = AXIS_H + lanes.filter((l) => l.label).length * LANE_H + all.length * ROW_H + 4;
  const svg = s("svg", { class: "waterfall", width, height, viewBox: `0 0 ${width} ${height}`, role: "list", "aria-label": `Waterfall of ${all.length} calls` });
  svg.append(s("defs", null, s("pattern", { id: "tool-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
    s("rect", { width: 6, height: 6, class: "hatch-bg" }), s("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }))));
  for (const [t, label] of ticks(span, plot)) {
    svg.append(s("line", { class: "grid", x1: x(t0 + t), x2: x(t0 + t), y1: AXIS_H - 4, y2: height }),
      s("text", { class: "tick", x: x(t0 + t), y: AXIS_H - 9, "text-anchor": t === 0 ? "start" : "middle" }, label));
  }
  const rowsByEl = new Map();
  let y = AXIS_H;
  for (const lane of lanes) {
    if (lane.label) {
      svg.append(s("text", { class: "lane", x: 4, y: y + LANE_H - 8 }, shortLabel(lane.label, 90)));
      y += LANE_H;
    }
    for (const row of lane.rows) {
      // A short name up front; the full one is set when the row takes focus (cheap for long sessions).
      const g = s("g", { class: "row", tabindex: rowsByEl.size ? -1 : 0, role: "listitem", "aria-label": rowLabel(row) },
      s("rect", { class: "row-bg", x: 0, y, width, height: ROW_H }),
      s("text", { class: `row-label${failed(row.c) ? " failed" : ""}`, x: lane.label ? 16 : 4, y: y + ROW_H / 2 + 4 }, shortLabel(rowLabel(row), 30)),
      barsOf(row, x, y));
      rowsByEl.set(g, row);
      svg.append(g);
      y += ROW_H;
    }
  }
  wire(svg, rowsByEl);
  return svg;
}

function wire(svg, rowsByEl) {
  const rowOf = (el) => rowsByEl.get(el.closest("g.row"));
  svg.addEventListener("pointermove", (ev) => {
    const bar = ev.target.closest("[data-call], [data-tool]");
    const row = bar && rowOf(bar);
    if (!row) return hideTip();
    const lines = bar.dataset.tool !== undefined ? toolLines(row, row.tools[Number(bar.dataset.tool)]) : describe(row);
    showTip(lines, ev.clientX, ev.clientY);
  });
  svg.addEventListener("pointerleave", hideTip);
  svg.addEventListener("focusin", (ev) => {
    const row = rowOf(ev.target);
    if (!row) return;
    for (const g of rowsByEl.keys()) g.tabIndex = g === ev.target ? 0 : -1;
    const lines = describe(row);
    ev.target.setAttribute("aria-label", lines.map((l) => l.join(": ")).join(". "));
    const bar = ev.target.querySelector(".bar-gen, .bar-refused") || ev.target;
    const r = bar.getBoundingClientRect();
    showTip(lines, r.right, r.top);
  });
  svg.addEventListener("focusout", hideTip);
  svg.addEventListener("keydown", (ev) => {
    const rows = [...rowsByEl.keys()];
    const i = rows.indexOf(document.activeElement);
    const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: rows.length - 1 }[ev.key];
    if (ev.key === "Escape") return hideTip();
    if (i < 0 || to === undefined) return;
    ev.preventDefault();
    rows[Math.max(0, Math.min(rows.length - 1, to))].focus();
  });
}

/** The legend: every colour named in words, with the shape it has in the chart. */
export const legend = () => h("ul", { class: "legend", "aria-label": "Legend" },
  [["sw-ttft", "Time to first token (streams)"], ["sw-gen", "Generation (a JSON answer is one bar)"], ["sw-tool", "Tool execution (measured on the wire)"],
    ["sw-tool-error", "Tool that returned an error"],
    ["sw-failed", "Failed call (also marked “error” in its label)"], ["sw-refused", "Refused by the sidecar (◆)"]]
    .map(([cls, text]) => h("li", null, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text)));
