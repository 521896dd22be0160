"""Poison batches: telling "ClickHouse is down" from "ClickHouse rejects this batch", and the dead-letter
file that a rejected batch goes to (used by :class:`sidecar.store.shipper.Shipper`).

An outage (connection refused or reset, timeouts, DNS, TLS, an HTTP proxy's 502, and server states that
pass: too many parts, memory, read-only, auth, missing table) is retried forever: the batch is fine and
the spool holds it. A rejection is ClickHouse's verdict on the rows themselves (a value it cannot parse
or convert, a constraint), or rows the client cannot even encode: retrying the same batch can never
succeed, so after a few attempts it is set aside here and shipping goes on.

The dead-letter file is JSON lines beside the spool, mode 0600 (events are the same data as the spool's):
``{"quarantined_at": <unix s>, "attempts": n, "error": "...", "event": {...}}``, one line per event, with
the event in the spool's own encoding (:func:`sidecar.store.spool.decode_event` reads it back).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from sidecar.core.events import CallEvent

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that describe the server's state, not the rows: the
# same batch can succeed once it passes. Any other code is a rejection of the batch.
SERVER_STATE_CODES = frozenset(
    {
        8,  # THERE_IS_NO_COLUMN          - the schema, not the rows (every batch would fail alike)
        16,  # NO_SUCH_COLUMN_IN_TABLE
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        160,  # TOO_SLOW
        164,  # READONLY
        173,  # CANNOT_ALLOCATE_MEMORY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        195,  # IP_ADDRESS_NOT_ALLOWED
        198,  # DNS_ERROR
        201,  # QUOTA_EXPIRED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        204,  # CANNOT_FSYNC
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        218,  # TABLE_IS_DROPPED
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        244,  # UNEXPECTED_ZOOKEEPER_ERROR
        252,  # TOO_MANY_PARTS
        254,  # NO_ACTIVE_REPLICAS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        289,  # REPLICA_IS_NOT_IN_QUORUM
        291,  # DATABASE_ACCESS_DENIED
        319,  # UNKNOWN_STATUS_OF_INSERT
        335,  # BARRIER_TIMEOUT
        364,  # RECEIVED_ERROR_TOO_MANY_REQUESTS
        373,  # SESSION_IS_LOCKED
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        473,  # DEADLOCK_AVOIDED
        497,  # ACCESS_DENIED
        499,  # S3_ERROR
        516,  # AUTHENTICATION_FAILED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION (network errors inside the server)
    }
)
_CODE = re.compile(r"\bcode:\s*(\d+)", re.IGNORECASE)  # "Code: 27. DB::Exception" / "exception, code: 27"
_DRIVER = "clickhouse_connect"
_DRIVER_ROW_ERRORS = frozenset({"DataError", "ProgrammingError"})  # raised before anything is sent


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, including a context hidden with ``from None`` (the store hides the
    driver's exception from tracebacks so that no secret is printed; its type still tells the story)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _message_code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def _driver_verdict(errors: list[BaseException]) -> bool:
    """clickhouse-connect's errors carry the server's code as ``code`` (``None`` when no server gave
    one); without one, only its client-side data errors are about the rows."""
    for error in errors:
        code = getattr(error, "code", None)
        if isinstance(code, int) and not isinstance(code, bool):
            return code not in SERVER_STATE_CODES
    names = {cls.__name__ for error in errors for cls in type(error).__mro__}
    return bool(names & _DRIVER_ROW_ERRORS)


def is_rejection(exc: BaseException) -> bool:
    """Whether a failed insert was ClickHouse refusing these rows (or the rows failing to encode), as
    opposed to an outage. Only failures of the insert itself are asked about: a failure to connect or
    migrate is always an outage."""
    chain = list(_chain(exc))
    if any(isinstance(e, OSError) for e in chain):  # refused, reset, timed out, DNS, TLS
        return False
    driver = [e for e in chain if type(e).__module__.startswith(_DRIVER)]
    if driver:  # its OperationalError (transport) or an HTTP proxy's 502 have no server code
        return _driver_verdict(driver)
    code = next((c for c in map(_message_code, chain) if c is not None), None)  # chDB: "Code: 27. …"
    if code is not None:
        return code not in SERVER_STATE_CODES
    return True  # no I/O error and no server code: the rows could not even be encoded


class DeadLetterFull(Exception):
    """The dead-letter file reached its cap: the batch stays in the spool (and shipping stays blocked)."""


class DeadLetterFile:
    """Append-only JSON lines, created with mode 0600, capped at ``max_bytes``."""

    def __init__(self, path: str | Path, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes

    def append(self, events: Sequence[CallEvent], *, error: str, attempts: int) -> None:
        """Write one line per event and fsync, or raise (``OSError``, ``DeadLetterFull``) having
        written nothing the caller must undo: the batch is acknowledged in the spool only after this."""
        at = time.time()
        data = b"".join(
            orjson.dumps({"quarantined_at": at, "attempts": attempts, "error": error, "event": event}) + b"\n"
            for event in events
        )
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size + len(data) > self.max_bytes:
            raise DeadLetterFull(f"dead-letter file {self.path} would pass {self.max_bytes} bytes")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when the file was made by hand, or under a loose umask
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # no half line for the next attempt to follow
                raise
        finally:
            os.close(fd)


def dead_letter_path(spool_path: str | Path) -> Path:
    """Beside the spool: ``spool.db`` → ``spool.deadletter.jsonl``."""
    path = Path(spool_path)
    return path.with_name(path.stem + ".deadletter.jsonl")
