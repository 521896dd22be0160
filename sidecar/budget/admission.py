"""What the proxy and the policies exchange with the budget around one call (SPEC §7): the request it
admits, the admission it settles, the warnings and the outcome hooks; and :class:`NullBudgetService`,
the budget with no ceiling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sidecar.budget import Reservation, Snapshot
from sidecar.core.budget_config import Limits
from sidecar.core.events import CallEvent

THRESHOLD, OVER_LIMIT = "threshold", "over_limit"  # BudgetWarning.kind
# on_backend_error kinds: admitted without counters (fail open), refused (fail closed), lost updates.
REDIS_UNAVAILABLE, REDIS_UNAVAILABLE_REFUSED, SETTLE_LOST = (
    "redis_unavailable",
    "redis_refused",
    "settle_lost",
)
BACKEND_ERROR_KINDS = (REDIS_UNAVAILABLE, REDIS_UNAVAILABLE_REFUSED, SETTLE_LOST)


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    """What the budget needs from a request. ``speed`` and ``inference_geo`` are the body's fields (a
    fast-mode call costs a multiple; an absent geo is reserved at the ``us`` price to stay an upper bound)."""

    session_id: str
    app: str
    model: str | None
    body_bytes: int
    max_tokens: int | None
    now: float  # unix seconds: picks the price period and the UTC day
    speed: str | None = None
    inference_geo: str | None = None
    regional_multiplier: float = 1.0  # a cloud's regional endpoint (SPEC §18): its price premium


@dataclass(frozen=True, slots=True)
class BudgetWarning:
    app: str
    limit: str  # a LIMIT_NAMES value: the metric label
    kind: str  # THRESHOLD: 80 % reached (once) | OVER_LIMIT: warn mode, would have been refused
    message: str


@dataclass(slots=True)
class Admission:
    """An admitted call; hand it back to ``settle`` or ``settle_failed``."""

    reservation: Reservation
    warnings: tuple[BudgetWarning, ...] = ()
    degraded: bool = False  # admitted without counters (fail open)
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    warnings: tuple[BudgetWarning, ...] = ()
    remaining_usd: float | None = None  # under the tightest USD ceiling; None when none applies
    snapshot: Snapshot | None = None


def _ignore(*_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class BudgetHooks:
    """Counters live in the metrics module; the service only reports outcomes through these."""

    on_refusal: Callable[[str, str], None] = _ignore  # (app, limit)
    on_warning: Callable[[str, str], None] = _ignore  # (app, limit)
    on_backend_error: Callable[[str], None] = _ignore  # (kind), one of BACKEND_ERROR_KINDS


class Budgets(Protocol):
    """What the proxy and admin routes depend on: :class:`BudgetService` or :class:`NullBudgetService`."""

    async def admit(self, req: AdmitRequest) -> Admission: ...

    async def settle(self, admission: Admission, event: CallEvent) -> Settlement: ...

    async def settle_failed(self, admission: Admission) -> None: ...


class NullBudgetService:
    """No ceiling anywhere: admits everything without touching counters. It cannot block or hold
    runtime ceilings; use :class:`BudgetService` with local counters when those must work."""

    _NONE = Reservation("", "", "", "", Limits(), 0, 0, held=False)

    async def admit(self, req: AdmitRequest) -> Admission:
        return Admission(self._NONE, settled=True)

    async def settle(self, admission: Admission, event: CallEvent) -> Settlement:
        return Settlement()

    async def settle_failed(self, admission: Admission) -> None:
        return None
