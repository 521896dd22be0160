"""What the sidecar knows about fleets and their members. Bookkeeping only: no sockets, no clocks.

Every method that records something takes ``now`` (unix seconds) from the caller. A member keeps its
history across reconnects (same fleet and member id); disconnected members stay listed (with their
disconnect reason) until :meth:`FleetRegistry.prune` forgets them. Not thread-safe: the fleet server,
the heartbeat loop and the admin routes all run on one event loop.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from sidecar.core.sessions import percentile
from sidecar.telemetry.metrics import FleetMetrics

RTT_WINDOW = 64  # RTT percentiles cover a member's last 64 pongs
STATUS_MAX_KEYS = 20
STATUS_MAX_TEXT = 200


class Link(Protocol):
    """A member's live connection, as the heartbeat loop and the registry see it."""

    async def ping(self) -> asyncio.Future[float]:
        """Send a ping now; the returned future resolves to the RTT once the pong arrives."""
        ...

    def write_backlog(self) -> int:
        """Bytes written but not yet taken by the peer's socket."""
        ...

    def close_soon(self, code: int, reason: str) -> None:
        """Start closing with ``code``; never waits."""
        ...


class Member:
    """One fleet member. ``gen`` increases on every connect so stale timers and pongs can be ignored."""

    __slots__ = (
        "close_code",
        "connected_at",
        "connects",
        "disconnect_reason",
        "disconnected_at",
        "fleet",
        "gen",
        "last_ping",
        "last_pong",
        "link",
        "member_id",
        "missed_pongs",
        "pending_since",
        "pings",
        "rtt_count",
        "rtts",
        "status",
        "status_at",
    )

    def __init__(self, fleet: Fleet, member_id: str) -> None:
        self.fleet = fleet
        self.member_id = member_id
        self.link: Link | None = None
        self.gen = 0
        self.connects = 0
        self.connected_at: float | None = None
        self.disconnected_at: float | None = None
        self.disconnect_reason: str | None = None
        self.close_code: int | None = None
        self.last_pong: float | None = None
        self.pings = 0
        self.missed_pongs = 0
        # Heartbeat loop state, on the loop's monotonic clock.
        self.last_ping = 0.0
        self.pending_since: float | None = None
        self.rtts: array[float] | None = None
        self.rtt_count = 0
        self.status: dict[str, Any] | None = None
        self.status_at: float | None = None

    @property
    def connected(self) -> bool:
        return self.link is not None

    @property
    def last_seen(self) -> float | None:
        """Last sign of life: a pong, a status message or the connect itself."""
        marks = [t for t in (self.last_pong, self.connected_at, self.status_at) if t is not None]
        return max(marks) if marks else None

    def rtt_quantile(self, q: float) -> float | None:
        """Nearest-rank quantile of the last ``RTT_WINDOW`` RTTs, or ``None`` before the first pong."""
        if self.rtts is None or self.rtt_count == 0:
            return None
        return percentile(self.rtts[: min(self.rtt_count, RTT_WINDOW)], q * 100)

    def to_json(self, now: float) -> dict[str, Any]:
        connected_at = self.connected_at if self.connected else None
        p50, p99 = self.rtt_quantile(0.5), self.rtt_quantile(0.99)
        return {
            "member": self.member_id,
            "connected": self.connected,
            "connected_at": self.connected_at,
            "connection_age_s": round(now - connected_at, 3) if connected_at is not None else None,
            "last_pong": self.last_pong,
            "rtt_p50_s": p50,
            "rtt_p99_s": p99,
            "pings": self.pings,
            "missed_pongs": self.missed_pongs,
            "reconnects": max(0, self.connects - 1),
            "disconnected_at": None if self.connected else self.disconnected_at,
            "disconnect_reason": self.disconnect_reason,
            "close_code": self.close_code,
            "status": self.status,
            "status_at": self.status_at,
        }


class Fleet:
    # The per-ping metric children are looked up once per fleet, not once per ping.
    __slots__ = ("connected", "label", "last_seen", "members", "name", "pings", "pongs_missed", "rtt")

    def __init__(self, name: str, label: str, metrics: FleetMetrics) -> None:
        self.name = name
        self.label = label
        self.members: dict[str, Member] = {}
        self.connected = 0
        self.last_seen: float | None = None  # latest sign of life from any member
        self.pings = metrics.pings.labels(label)
        self.rtt = metrics.rtt.labels(label)
        self.pongs_missed = metrics.pongs_missed.labels(label)

    def seen(self, now: float) -> None:
        if self.last_seen is None or now > self.last_seen:
            self.last_seen = now


def sanitize_status(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Keep at most ``STATUS_MAX_KEYS`` scalar fields of a member's status message (texts truncated)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if len(out) >= STATUS_MAX_KEYS:
            break
        if key == "type" or not isinstance(key, str):
            continue
        if isinstance(value, str):
            out[key[:STATUS_MAX_TEXT]] = value[:STATUS_MAX_TEXT]
        elif value is None or isinstance(value, bool | int | float):
            out[key[:STATUS_MAX_TEXT]] = value
    return out


class FleetRegistry:
    def __init__(self, metrics: FleetMetrics) -> None:
        self.metrics = metrics
        self._fleets: dict[str, Fleet] = {}

    def fleet(self, name: str) -> Fleet | None:
        return self._fleets.get(name)

    def fleets(self) -> Iterator[Fleet]:
        return iter(list(self._fleets.values()))

    def members(self, fleet: str) -> list[Member]:
        f = self._fleets.get(fleet)
        return list(f.members.values()) if f is not None else []

    def connected_count(self, fleet: str) -> int:
        f = self._fleets.get(fleet)
        return f.connected if f is not None else 0

    def connect(self, fleet_name: str, member_id: str, link: Link, now: float) -> tuple[Member, Link | None]:
        """Record a new connection; returns the member and the link it replaces (to be closed), if any."""
        fleet = self._fleets.get(fleet_name)
        if fleet is None:
            fleet = self._fleets[fleet_name] = Fleet(
                fleet_name, self.metrics.fleet_label(fleet_name), self.metrics
            )
        member = fleet.members.get(member_id)
        if member is None:
            member = fleet.members[member_id] = Member(fleet, member_id)
        replaced = member.link
        if replaced is not None:
            self._count_disconnect(member, "replaced", now, None)
        else:
            fleet.connected += 1
            self.metrics.members.labels(fleet.label).inc()
        member.link = link
        member.gen += 1
        member.connects += 1
        member.connected_at = now
        member.pending_since = None
        member.disconnect_reason = None
        member.close_code = None
        fleet.seen(now)
        self.metrics.connects.labels(fleet.label).inc()
        return member, replaced

    def disconnect(self, member: Member, link: Link, reason: str, now: float, code: int | None) -> bool:
        """Record the end of ``link``. False (nothing recorded) when ``link`` was already replaced."""
        if member.link is not link:
            return False
        self._count_disconnect(member, reason, now, code)
        member.link = None
        member.gen += 1
        member.fleet.connected -= 1
        self.metrics.members.labels(member.fleet.label).dec()
        return True

    def _count_disconnect(self, member: Member, reason: str, now: float, code: int | None) -> None:
        member.disconnected_at = now
        member.disconnect_reason = reason
        member.close_code = code
        self.metrics.disconnects.labels(member.fleet.label, reason).inc()

    def record_ping(self, member: Member) -> None:
        member.pings += 1
        member.fleet.pings.inc()

    def record_pong(self, member: Member, rtt: float, now: float) -> None:
        if member.rtts is None:
            member.rtts = array("d", bytes(8 * RTT_WINDOW))
        member.rtts[member.rtt_count % RTT_WINDOW] = rtt
        member.rtt_count += 1
        member.last_pong = now
        member.fleet.seen(now)
        member.fleet.rtt.observe(rtt)

    def record_missed(self, member: Member) -> None:
        member.missed_pongs += 1
        member.fleet.pongs_missed.inc()

    def record_status(self, member: Member, doc: Mapping[str, Any], now: float) -> None:
        member.status = sanitize_status(doc)
        member.status_at = now
        member.fleet.seen(now)

    def prune(self, now: float, forget_after_s: float) -> int:
        """Forget members disconnected for longer than ``forget_after_s``, then empty fleets."""
        forgotten = 0
        for name, fleet in list(self._fleets.items()):
            for member_id, m in list(fleet.members.items()):
                gone_at = m.disconnected_at
                if not m.connected and gone_at is not None and now - gone_at > forget_after_s:
                    del fleet.members[member_id]
                    forgotten += 1
            if not fleet.members:
                del self._fleets[name]
        return forgotten

    def forget(self, fleet_name: str, member_id: str) -> bool:
        """Drop a disconnected member (operator's "this one is gone for good"). False if unknown/connected."""
        fleet = self._fleets.get(fleet_name)
        member = fleet.members.get(member_id) if fleet is not None else None
        if fleet is None or member is None or member.connected:
            return False
        del fleet.members[member_id]
        return True

    def export_gauges(self) -> None:
        """Per-fleet dead-man gauges (``check="fleet:NAME"``): up while a member is connected."""
        for fleet in self._fleets.values():
            self.metrics.check_state("fleet:" + fleet.label, bool(fleet.connected), fleet.last_seen)

    def snapshot(self, now: float, only: str | None = None, members: bool = True) -> list[dict[str, Any]]:
        """The fleet view of ``GET /sidecar/v1/fleet``: fleets by name, members by id."""
        out: list[dict[str, Any]] = []
        for name in sorted(self._fleets):
            if only is not None and name != only:
                continue
            fleet = self._fleets[name]
            doc: dict[str, Any] = {
                "fleet": name,
                "connected": fleet.connected,
                "known": len(fleet.members),
                "last_seen": fleet.last_seen,
            }
            if members:
                doc["members"] = [fleet.members[k].to_json(now) for k in sorted(fleet.members)]
            out.append(doc)
        return out
