"""Arguments of ``report`` and ``check``, and the environment variables they honour (``SIDECAR_STORE``,
``SIDECAR_SESSION_IDLE_TIMEOUT``). Every problem is a :class:`UsageError` (one line, exit code 2)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import NoReturn

from sidecar.core.durations import parse_duration
from sidecar.core.report import DEFAULT_TOLERANCE

DEFAULT_STORE = "sqlite:///sidecar-data/events.db"
DEFAULT_IDLE_TIMEOUT_S = 900.0


class UsageError(Exception):
    """A problem with how the command was called; the message is shown as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so errors become one-line messages and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nonneg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0: {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, window: str) -> None:
    parser.add_argument("--store", help=f"event store URL (default: $SIDECAR_STORE or {DEFAULT_STORE})")
    parser.add_argument(
        "--window",
        type=_duration_arg,
        default=parse_duration(window),
        help=f"e.g. 30m, 1h, 7d (default {window})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_duration_arg,
        help="a session closes after this long idle (default: $SIDECAR_SESSION_IDLE_TIMEOUT or 15m)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


# Both commands read the store's rollups and latency histograms, not its events (SPEC R-RS-1).
_PERCENTILES = (
    "Latency percentiles come from the store's latency histograms: each is the upper edge of the "
    "1/16-octave bucket that holds the exact nearest-rank value, so at most 4.4 % above it, never below."
)


def report_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="claude-sidecar report",
        description="Per-session spend and latency tables from the store. Top sessions are whole sessions "
        "(totals since their first call) seen in the window. " + _PERCENTILES,
    )
    _common(p, "24h")
    p.add_argument("--limit", type=int, default=10, help="top sessions to show (default 10)")
    return p


def check_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="claude-sidecar check",
        description="Exit 1 when recorded traffic is over a ceiling or regressed against a baseline, "
        "0 when healthy, 2 on a usage error. " + _PERCENTILES + " The p95 session cost is exact.",
    )
    _common(p, "1h")
    p.add_argument("--p95-latency-ms", type=_nonneg, help="ceiling for each model's p95 total duration")
    p.add_argument("--p95-session-cost-usd", type=_nonneg, help="ceiling for the p95 cost of closed sessions")
    p.add_argument("--baseline", metavar="FILE", help="fail when a value is above this saved baseline")
    p.add_argument(
        "--tolerance", type=_nonneg, help=f"allowed rise over the baseline (default {DEFAULT_TOLERANCE})"
    )
    p.add_argument(
        "--save-baseline", metavar="FILE", help="save this run's measurements (when the check passes)"
    )
    p.add_argument(
        "--require-data", action="store_true", help="fail when the window holds no successful model call"
    )
    return p


def store_and_idle(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, float]:
    """The store URL and the session idle timeout: flag, else environment, else default."""
    url = args.store or env.get("SIDECAR_STORE") or DEFAULT_STORE
    idle = args.idle_timeout
    if idle is None:
        raw = env.get("SIDECAR_SESSION_IDLE_TIMEOUT", "")
        try:
            idle = parse_duration(raw) if raw else DEFAULT_IDLE_TIMEOUT_S
        except ValueError:
            raise UsageError(f"SIDECAR_SESSION_IDLE_TIMEOUT: {raw!r} is not a duration") from None
    if args.window <= 0:
        raise UsageError("--window must be longer than 0")
    return url, float(idle)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """Parsed arguments, or the exit code of ``--help`` (argparse exits after printing it)."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
