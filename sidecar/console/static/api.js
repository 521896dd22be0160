// The documented admin API (/sidecar/v1/*), with the admin token when the sidecar has one (SPEC R-UI-1):
// asked once, kept in this tab (or on this device when the user ticks the box), sent as a Bearer header,
// never put in a URL.
const KEY = "claude-sidecar.admin-token";
let asking = null;
let declined = false;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const token = () => sessionStorage.getItem(KEY) || localStorage.getItem(KEY);

function forgetToken() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** Show the token dialog; resolves once a token is entered, rejects if the user closes it. */
export function askToken(refused) {
  declined = false;
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const form = dialog.querySelector("form");
  dialog.querySelector(".token-refused").hidden = !refused;
  asking = new Promise((resolve, reject) => {
    const done = (ok) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("close", onClose);
      asking = null;
      ok ? resolve() : reject(new ApiError(401, "The admin token is needed to read this sidecar."));
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      const value = form.elements.token.value.trim();
      if (!value) return;
      forgetToken();
      (form.elements.remember.checked ? localStorage : sessionStorage).setItem(KEY, value);
      form.reset();
      dialog.close("ok");
    };
    const onClose = () => {
      if (dialog.returnValue !== "ok") declined = true;
      done(dialog.returnValue === "ok");
    };
    dialog.returnValue = "";
    dialog.querySelector(".cancel").onclick = () => dialog.close("cancel");
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
  });
  return asking;
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== null && v !== undefined && v !== "") params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/**
 * Call the admin API and return its JSON. Throws ApiError (status, the API's own message).
 * `allow` lists statuses returned as {status, doc} instead of thrown (e.g. 404 for an optional endpoint).
 */
export async function api(path, { method = "GET", query, body, allow = [] } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { accept: "application/json" };
    const t = token();
    if (t) headers.authorization = `Bearer ${t}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(url(path, query), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit",
    });
    if (res.status === 401 && attempt < 3 && !declined) {
      if (t) forgetToken();
      await askToken(Boolean(t));
      continue;
    }
    const doc = await res.json().catch(() => null);
    if (allow.includes(res.status)) return { status: res.status, doc };
    if (!res.ok) {
      const message = (doc && doc.error && doc.error.message) || `${res.status} ${res.statusText}`;
      throw new ApiError(res.status, message);
    }
    return allow.length ? { status: res.status, doc } : doc;
  }
}

/** Path segment for an id that may hold any character. */
export const seg = (id) => encodeURIComponent(id);

// Whether GET /sidecar/v1/summary exists on this sidecar (SPEC R-RS-3); asked once per page load.
let summaryAnswers = null;

/** The summary for `query`, or null when this sidecar has no summary endpoint (older release). */
export async function summary(query) {
  if (summaryAnswers === false) return null;
  const { status, doc } = await api("/sidecar/v1/summary", { query, allow: [404] });
  summaryAnswers = status !== 404;
  return summaryAnswers ? doc : null;
}

/** Rows of a summary answer: [{key, ...figures}], one per app, model, hour or day. */
export function summaryRows(doc) {
  return doc.rows;
}

const WEEK_S = 7 * 86400;

/** App names seen in the last 7 days: from the summary when there is one, else from the sessions list. */
export async function appsSeen() {
  const now = Math.floor(Date.now() / 1000);
  const sum = await summary({ since: now - WEEK_S, group_by: "app" });
  if (sum) return summaryRows(sum).map((r) => r.key);
  const doc = await api("/sidecar/v1/sessions", { query: { limit: 1000, order: "recent", since: now - WEEK_S } });
  return [...new Set(doc.sessions.map((x) => x.app))];
}

/**
 * A mark that moves whenever a call is recorded: the most recently seen session, its last call and count.
 * One cheap read (limit 1) lets pages skip their heavier queries while nothing happened.
 */
export async function trafficMark() {
  const doc = await api("/sidecar/v1/sessions", { query: { limit: 1, order: "recent" } });
  const x = doc.sessions[0];
  return x ? `${x.session_id}|${x.last_seen_at_ts}|${x.model_calls}` : "";
}

/** Whether a page must redo its heavy reads: the traffic moved, or `maxAgeMs` passed since the last. */
export function staleness(maxAgeMs) {
  let mark = null;
  let at = 0;
  return {
    async check() {
      const now = await trafficMark();
      const stale = now !== mark || Date.now() - at > maxAgeMs;
      return { stale, done: () => { mark = now; at = Date.now(); } };
    },
  };
}
