// Formatting (SPEC R-UI-5): money with meaningful digits ($0.000106, not $0.0001), tokens with
// separators, times in the viewer's own zone. Every formatter shows "—" for a missing value.
const DASH = "—";
const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const cents = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const stamp = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const clock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

const missing = (v) => v === null || v === undefined || Number.isNaN(v);

/** Whole numbers with thousands separators: 12,345. */
export const int = (n) => (missing(n) ? DASH : whole.format(n));

/** Dollars: cents from $1 up; below, three significant digits with trailing zeros dropped. */
export function usd(x) {
  if (missing(x)) return DASH;
  const a = Math.abs(x);
  let text;
  if (a === 0) text = "0.00";
  else if (a >= 1) text = cents.format(a);
  else {
    const decimals = Math.min(20, 2 - Math.floor(Math.log10(a)));
    text = a.toFixed(decimals).replace(/0+$/, "").replace(/\.$/, "");
    if (!text.includes(".")) text += ".00";
    else if (text.split(".")[1].length < 2) text += "0";
  }
  return (x < 0 ? "-$" : "$") + text;
}

/** Seconds as a duration: 0.4 ms, 412 ms, 1.25 s, 6m 40s, 2h 05m, 1d 4h. */
export function secs(s) {
  if (missing(s)) return DASH;
  const pad = (n) => String(Math.floor(n)).padStart(2, "0");
  if (s < 0.00005) return "0 ms";
  if (s < 0.01) return `${(s * 1000).toFixed(1)} ms`;
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(2)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad((s % 3600) / 60)}m`;
  const hours = Math.floor((s % 86400) / 3600);
  return `${Math.floor(s / 86400)}d${hours ? ` ${hours}h` : ""}`;
}

/** A ratio (0..1) as a percentage with one decimal. */
export const pct = (r) => (missing(r) ? DASH : `${(r * 100).toFixed(1)}%`);

/** Unix seconds as the viewer's local date and time: "Dec 7, 14:03:21". */
export const when = (ts) => (missing(ts) ? DASH : stamp.format(new Date(ts * 1000)));

/** Unix seconds as the viewer's local time of day: "14:03:21". */
export const timeOfDay = (ts) => (missing(ts) ? DASH : clock.format(new Date(ts * 1000)));

/** How long ago, for recent instants: "5 s ago", "3 min ago"; older ones as a date. */
export function ago(ts, now = Date.now() / 1000) {
  if (missing(ts)) return DASH;
  const d = Math.max(0, now - ts);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return when(ts);
}

/** Total tokens of a session or call: the four input buckets and output. */
export const tokens = (o) =>
  (o.input_tokens || 0) + (o.output_tokens || 0) + (o.cache_read_input_tokens || 0) +
  (o.cache_creation_input_tokens || 0);
