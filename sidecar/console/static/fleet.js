// /ui/fleet — WebSocket fleets and their members: state, heartbeat RTT, missed pongs (SPEC R-UI-2, R-FL-2).
import { api, seg } from "./api.js";
import { badge, h, table, update } from "./dom.js";
import { ago, int, secs, when } from "./format.js";

function state(m) {
  if (m.connected) return badge("Connected", "on");
  return badge(m.disconnect_reason ? `Gone: ${m.disconnect_reason}` : "Disconnected", "bad");
}

const status = (m) => (m.status && typeof m.status === "object"
  ? Object.entries(m.status).filter(([k]) => k !== "type").map(([k, v]) => `${k} ${v}`).join(", ") : m.status || "—");

function fleetSection(f, forget) {
  const members = f.members || [];
  return h("section", { class: "panel table-wrap" },
    h("h2", { class: "caption" }, `${f.fleet} · ${int(f.connected)} of ${int(f.known)} connected`),
    table([
      { label: "Member", cell: (m) => m.member },
      { label: "State", cell: state },
      { label: "Connected for", num: true, cell: (m) => secs(m.connection_age_s) },
      { label: "Last pong", cell: (m) => (m.last_pong ? when(m.last_pong) : "—") },
      { label: "RTT p50", num: true, cell: (m) => secs(m.rtt_p50_s) },
      { label: "RTT p99", num: true, cell: (m) => secs(m.rtt_p99_s) },
      { label: "Pings", num: true, cell: (m) => int(m.pings) },
      { label: "Missed pongs", num: true, cell: (m) => int(m.missed_pongs) },
      { label: "Reconnects", num: true, cell: (m) => int(m.reconnects) },
      { label: "Status", cell: status },
      { label: "Left", cell: (m) => (m.connected ? "—" : `${ago(m.disconnected_at)}${m.close_code ? ` (code ${m.close_code})` : ""}`) },
      { label: "", cell: (m) => (m.connected ? null : h("button", { type: "button", dataset: { focus: `forget:${f.fleet}:${m.member}` }, on: { click: forget(f.fleet, m.member) } }, "Forget")) },
    ], members, { empty: "No members." }));
}

export function mount(main, ctx) {
  const info = h("div");
  const body = h("div");
  const flash = h("p", { class: "action-status", role: "status" });
  main.append(h("div", { class: "page-head" }, h("h1", null, "Fleet"),
    h("p", { class: "muted" }, "Members connect over WebSocket and answer the sidecar's pings; a member that misses its pongs is closed.")),
  info, flash, body);
  const forget = (fleetName, member) => async () => {
    try {
      await api(`/sidecar/v1/fleet/${seg(fleetName)}/members/${seg(member)}`, { method: "DELETE" });
      flash.textContent = `${member} forgotten.`;
    } catch (err) {
      flash.textContent = `${member}: ${err.message}`;
    }
    ctx.refresh();
  };
  return {
    title: "Fleet",
    async refresh() {
      const doc = await api("/sidecar/v1/fleet");
      update(info, JSON.stringify([doc.connect_url, doc.ping_interval_s, doc.ping_timeout_s]), () =>
        h("p", { class: "meta" }, h("span", null, "Connect at ", h("code", null, `${doc.connect_url}?fleet=NAME&member=ID`)),
          h("span", null, `Ping every ${secs(doc.ping_interval_s)}, timeout ${secs(doc.ping_timeout_s)}`)));
      const now = Math.floor(Date.now() / 10000); // "Left … ago" moves on every 10 s
      update(body, JSON.stringify(doc.fleets) + now, () => (doc.fleets.length
        ? doc.fleets.map((f) => fleetSection(f, forget))
        : h("section", { class: "panel" }, h("p", { class: "muted" }, "No fleet member has connected yet."))));
    },
  };
}
