"""The dead-man engine's state as ``GET /sidecar/v1/alerts`` answers it: what is firing, every check's
state, and active snoozes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sidecar.alerting.checks import DOWN, NEW, Subject
from sidecar.alerting.config import FLEET_MEMBERS, CheckSpec


def alerts_view(
    subjects: Iterable[Subject],
    specs: Iterable[CheckSpec],
    snoozes: Mapping[str, tuple[float, str]],
    muted: Callable[[str], bool],
    details: Mapping[str, str],
) -> dict[str, Any]:
    """The answer over the engine's subjects and checks; ``muted(check)``: snoozed now; ``details``: the
    last assessment's detail per subject key."""

    def subject_json(s: Subject) -> dict[str, Any]:
        return {
            "check": s.check,
            "member": s.member,
            "kind": s.kind,
            "status": s.status,
            "since": s.since,
            "last_seen": s.last_seen,
            "misses": s.misses,
            "firing": s.firing,
            "fired_at": s.fired_at,
            "notified": s.notified,
            "muted": muted(s.check),
            "detail": details.get(s.key, "never evaluated" if s.status == NEW else ""),
        }

    listed = sorted(subjects, key=lambda s: s.key)
    by_key = {s.key: s for s in listed}
    checks = []
    for spec in specs:
        doc: dict[str, Any] = {"check": spec.name, "kind": spec.kind, "period_s": spec.period_s}
        doc.update(grace_s=spec.grace_s, fleet=spec.fleet, dynamic=spec.dynamic)
        if spec.kind == FLEET_MEMBERS:
            watched = [s for s in listed if s.check == spec.name and s.member is not None]
            doc.update(members_watched=len(watched), members_down=sum(s.status == DOWN for s in watched))
        elif spec.name in by_key:
            doc.update(subject_json(by_key[spec.name]))
        checks.append(doc)
    return {
        "firing": [subject_json(s) for s in listed if s.firing],
        "checks": checks,
        "snoozes": [{"scope": k, "until": u, "reason": r} for k, (u, r) in sorted(snoozes.items())],
    }
