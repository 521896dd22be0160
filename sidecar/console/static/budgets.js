// /ui/budgets — the ceilings in effect per app, spend today against the daily ceiling, edit (runtime
// override held by this process), block / unblock (SPEC R-UI-2, R-CC-5).
import { api, appsSeen, seg, staleness } from "./api.js";
import { badge, field, h, meter, table, update } from "./dom.js";
import { int, usd } from "./format.js";

const FIELDS = [
  ["session_max_usd", "$ per session", usd, "any"],
  ["session_max_tokens", "Tokens per session", int, "1"],
  ["session_max_model_calls", "Model calls per session", int, "1"],
  ["session_max_tool_calls", "Tool calls per session", int, "1"],
  ["app_max_usd_per_day", "$ per UTC day (app)", usd, "any"],
];
const none = (fmt) => (v) => (v === null || v === undefined ? "none" : fmt(v));

function editor(app, limits, done) {
  const status = h("p", { class: "action-status", role: "status" });
  const form = h("form", { class: "editor", "aria-label": `Ceilings of ${app}` },
    h("h2", { class: "caption" }, `Edit ceilings of ${app}`),
    h("div", { class: "fields" },
      FIELDS.map(([key, label, , step]) => field(label,
        h("input", { name: key, type: "number", min: 0, step, value: limits[key] ?? "", placeholder: "none" }))),
      field("Mode", h("select", { name: "mode" },
        ["enforce", "warn"].map((m) => h("option", { value: m, selected: m === limits.mode }, m))))),
    h("p", { class: "muted" }, "An empty field means no ceiling. Changes hold until this sidecar restarts."),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Save"),
      h("button", { type: "button", on: { click: () => send("DELETE") } }, "Reset to configured"),
      h("button", { type: "button", on: { click: () => done(false) } }, "Close")),
    status);
  async function send(method) {
    const body = { mode: form.elements.mode.value };
    for (const [key] of FIELDS) {
      const raw = form.elements[key].value.trim();
      body[key] = raw === "" ? null : Number(raw);
    }
    try {
      await api(`/sidecar/v1/apps/${seg(app)}/budget`, { method, body: method === "PUT" ? body : undefined });
      done(true);
    } catch (err) {
      status.textContent = `Not saved: ${err.message}`;
    }
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); send("PUT"); });
  return form;
}

export function mount(main, ctx) {
  const extra = ctx.query.getAll("app");
  const body = h("div", { class: "panel table-wrap" });
  const edit = h("div");
  const flash = h("p", { class: "action-status", role: "status" });
  const find = h("form", { class: "filters", "aria-label": "Show an app" },
    field("App", h("input", { name: "app", required: true, placeholder: "any app name" })),
    h("button", { type: "submit" }, "Show"));
  find.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams(ctx.query);
    p.append("app", find.elements.app.value.trim());
    ctx.go(`/ui/budgets?${p}`);
  });
  main.append(h("div", { class: "page-head" }, h("h1", null, "Budgets"),
    h("p", { class: "muted" }, "Ceilings in effect for each app seen in the last 7 days: the defaults, the config "
      + "file's per-app ceilings and changes made here. A blocked app's calls are refused (429).")),
  find, flash, body, edit);

  const blockApp = (app, op) => async () => {
    try {
      const r = await api(`/sidecar/v1/apps/${seg(app)}/${op}`, { method: "POST" });
      flash.textContent = `${app}: ${r.blocked ? "blocked" : "not blocked"}.`;
    } catch (err) {
      flash.textContent = `${app}: ${err.message}`;
    }
    ctx.refresh();
  };
  const open = (b) => () => {
    edit.replaceChildren(h("section", { class: "panel" }, editor(b.app, b.limits, (saved) => {
      edit.replaceChildren();
      if (saved) flash.textContent = `${b.app}: ceilings saved.`;
      ctx.refresh();
    })));
    edit.querySelector("input")?.focus();
  };

  const traffic = staleness(60_000);
  let seen = [];
  return {
    title: "Budgets",
    async refresh() {
      const { stale, done } = await traffic.check(); // new apps appear with new calls
      if (stale) {
        seen = await appsSeen();
        done();
      }
      const apps = [...new Set([...seen, "default", ...extra])].sort();
      const rows = await Promise.all(apps.map((a) => api(`/sidecar/v1/apps/${seg(a)}/budget`)));
      update(body, JSON.stringify(rows), () => table([
        { label: "App", cell: (b) => b.app },
        { label: "Mode", cell: (b) => b.limits.mode },
        ...FIELDS.slice(0, 4).map(([key, label, fmt]) => ({ label, num: true, cell: (b) => none(fmt)(b.limits[key]) })),
        { label: "Spend today (UTC)", cell: (b) => meter(`${b.app} spend today`, b.used_usd_today, b.limits.app_max_usd_per_day, usd, true) },
        { label: "State", cell: (b) => (b.blocked ? badge("Blocked", "bad") : badge("Active", "on")) },
        { label: "Actions", cell: (b) => h("div", { class: "row-actions" },
          h("button", { type: "button", dataset: { focus: `edit:${b.app}` }, on: { click: open(b) } }, "Edit"),
          b.blocked
            ? h("button", { type: "button", dataset: { focus: `block:${b.app}` }, on: { click: blockApp(b.app, "unblock") } }, "Unblock")
            : h("button", { type: "button", class: "danger", dataset: { focus: `block:${b.app}` }, on: { click: blockApp(b.app, "block") } }, "Block")) },
      ], rows, { caption: `${int(rows.length)} apps` }));
    },
  };
}
