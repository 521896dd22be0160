"""Budget counters: the interface the budget service calls, and the values it exchanges.

Implementations: :class:`sidecar.budget.local.LocalCounters` (in-process, rebuilt from the embedded
store) and :class:`sidecar.budget.redis_counters.RedisCounters` (shared by replicas). ``sidecar.app`` picks
one; :class:`sidecar.budget.service.BudgetService` is the facade the proxy calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sidecar.core.budget_config import Limits
from sidecar.core.budget_counts import Breach, Counts
from sidecar.core.budget_estimate import Actual, Estimate

SESSION_SCOPE, APP_SCOPE = "session", "app"


class CountersUnavailable(Exception):
    """The counter store did not answer (in time); the service applies the Redis fail mode."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """What an admitted call holds until it is reconciled or released (exactly once; both idempotent).

    ``held`` is False for a call admitted without a reservation (fail-open): reconciling it still adds
    its real amounts. ``session_id`` ``""`` means the call belongs to no session (no session ceilings).
    """

    id: str
    session_id: str
    app: str
    day: str  # the UTC day the call counts for (its start)
    limits: Limits
    nanos: int
    tokens: int
    held: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`BudgetCounters.try_reserve`.

    Refused (``admitted`` False, enforce mode): ``blocked`` names the blocked scope, else ``breaches``
    holds the ceilings that refuse. Admitted in warn mode: the would-be refusals, for warnings.
    """

    admitted: bool
    reservation: Reservation | None
    breaches: tuple[Breach, ...] = ()
    blocked: str | None = None  # SESSION_SCOPE | APP_SCOPE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters of a session (``None`` for no session) and of its app's UTC day."""

    session: Counts | None
    app_day: Counts


@dataclass(frozen=True, slots=True)
class Reconciled:
    """Counters after a reconcile, and the ceilings that reached 80 % for the first time (once per
    session and ceiling; once per app and UTC day for ``app_daily_usd``)."""

    snapshot: Snapshot
    warned: tuple[str, ...] = ()


class BudgetCounters(Protocol):
    """Counters behind the ceilings. Every method is atomic with respect to every other caller (other
    tasks, other replicas); implementations raise :class:`CountersUnavailable` and nothing else."""

    async def try_reserve(
        self, session_id: str, app: str, day: str, limits: Limits, estimate: Estimate
    ) -> Decision:
        """Apply the admission rule of :mod:`sidecar.core.budget_counts`; when admitted, reserve ``estimate``
        (and one model call) in the session and the app's day."""
        ...

    async def reconcile(self, reservation: Reservation, actual: Actual) -> Reconciled:
        """Release the reservation (if still held) and add the real amounts."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Release the reservation of a call that never reached the upstream."""
        ...

    async def block(self, scope: str, name: str) -> None: ...

    async def unblock(self, scope: str, name: str) -> None: ...

    async def is_blocked(self, scope: str, name: str) -> bool: ...

    async def usage(self, session_id: str, app: str, day: str) -> Snapshot: ...

    async def aclose(self) -> None: ...
