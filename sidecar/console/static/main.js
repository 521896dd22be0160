// The console's router and refresh loop. Every page has its own URL (SPEC R-UI-2); the page in view
// re-reads the admin API every POLL_MS while the tab is visible (SPEC R-UI-3), and not at all otherwise.
import { askToken } from "./api.js";
import { h } from "./dom.js";
import { timeOfDay } from "./format.js";
import * as alerts from "./alerts.js";
import * as budgets from "./budgets.js";
import * as fleet from "./fleet.js";
import * as overview from "./overview.js";
import * as session from "./session.js";
import * as sessions from "./sessions.js";

const POLL_MS = 1500;
const ROUTES = [
  [/^\/ui\/?$/, overview, "overview"],
  [/^\/ui\/sessions\/?$/, sessions, "sessions"],
  [/^\/ui\/sessions\/(.+)$/, session, "sessions"],
  [/^\/ui\/budgets\/?$/, budgets, "budgets"],
  [/^\/ui\/fleet\/?$/, fleet, "fleet"],
  [/^\/ui\/alerts\/?$/, alerts, "alerts"],
];

const main = document.getElementById("main");
const live = document.getElementById("live");
let page = null;
let generation = 0;
let busy = false;
let again = false; // a refresh was asked for while one was running
let timer = 0;

function setLive(kind, text, action) {
  live.className = `live ${kind}`;
  live.replaceChildren(h("span", { class: "live-text" }, text), ...(action ? [action] : []));
}

function notFound() {
  main.replaceChildren(h("h1", null, "Page not found"),
    h("p", null, "This console has no such page. ", h("a", { href: "/ui/" }, "Go to the overview.")));
  return { title: "Not found", refresh: async () => {} };
}

/** Mount the page for the current URL. */
function route() {
  generation += 1;
  clearTimeout(timer);
  document.getElementById("tip").hidden = true;
  const path = location.pathname;
  const found = ROUTES.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", Boolean(found) && a.dataset.page === found[2]);
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  page?.unmount?.();
  main.replaceChildren();
  if (!found) {
    page = notFound();
  } else {
    const params = path.match(found[0]).slice(1).map(decodeURIComponent);
    const ctx = { params, query: new URLSearchParams(location.search), go, refresh: tick };
    page = found[1].mount(main, ctx);
  }
  document.title = `${page.title} · claude-sidecar`;
  tick();
}

/** Navigate inside the console without reloading it. */
function go(href) {
  history.pushState(null, "", href);
  route();
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

/** Refresh the page in view now, then every POLL_MS while the tab is visible. */
async function tick() {
  clearTimeout(timer);
  if (document.hidden) return;
  if (busy) {
    again = true; // the running refresh starts another as soon as it ends
    return;
  }
  busy = true;
  again = false;
  const mine = generation;
  try {
    await page.refresh();
    if (mine === generation && !document.hidden) setLive("ok", `Live · updated ${timeOfDay(Date.now() / 1000)}`);
  } catch (err) {
    if (mine === generation) showError(err);
  } finally {
    busy = false;
  }
  if (mine !== generation || again) tick(); // another page, or an action that wants fresh data
  else timer = setTimeout(tick, POLL_MS);
}

function showError(err) {
  if (err.status === 401) {
    const enter = h("button", { type: "button", class: "link", on: { click: () => askToken(false).then(tick, () => {}) } },
      "Enter token");
    setLive("error", "Admin token needed. ", enter);
  } else {
    setLive("error", `Could not refresh: ${err.message}`);
  }
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[href]");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const to = new URL(a.href, location.href);
  if (to.origin !== location.origin || !to.pathname.startsWith("/ui/") || a.target || a.hasAttribute("download")) return;
  if (to.pathname.startsWith("/ui/static/")) return;
  ev.preventDefault();
  if (to.href !== location.href) go(to.pathname + to.search);
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) setLive("paused", "Paused while this tab is hidden");
  else tick();
});
window.addEventListener("popstate", route);
route();
