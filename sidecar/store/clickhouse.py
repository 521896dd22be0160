"""ClickHouse event store for fleets (SPEC R-ST-2), behind a three-method client interface.

:class:`ClickHouseStore` speaks only :class:`ClickHouseClient` (``command`` / ``insert`` / ``query``).
In production that is :class:`ClickHouseConnectClient`, a thin adapter over a ``clickhouse-connect``
``Client``; tests use :class:`sidecar.store.chdb_client.ChdbClient`, the same interface on an in-process
ClickHouse engine. Inserts carry an ``insert_deduplication_token`` derived from the batch's event ids, so
a batch retried after an unclear failure is stored once; reads use ``FINAL`` so that even a duplicate
that slipped past the deduplication window is returned once.

Secrets: the URL's password is never put in a message; errors are re-raised as
:class:`ClickHouseStoreError` with the password scrubbed and without the original exception chained.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Protocol, TypedDict
from urllib.parse import quote

from sidecar.core.events import CallEvent
from sidecar.store.clickhouse_rows import EVENT_COLUMNS, row_to_event
from sidecar.store.clickhouse_rows import event_to_row as _event_to_row
from sidecar.store.clickhouse_schema import SchemaOptions, migrate, schema_version


class ClickHouseClient(Protocol):
    """The minimal client the store needs; see :class:`ClickHouseConnectClient` for the real one."""

    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> Any: ...

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None: ...

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


class ClickHouseParams(TypedDict):
    user: str
    password: str
    host: str
    port: int
    database: str
    secure: bool
    verify: bool
    ca_cert: str | None
    cluster: str | None


class ClickHouseStoreError(Exception):
    """A ClickHouse call failed (unreachable, refused, bad schema). The message holds no secret."""


class ClickHouseConnectClient:
    """:class:`ClickHouseClient` over a ``clickhouse_connect`` ``Client`` (or anything with its methods)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> Any:
        return self._client.command(sql, settings=dict(settings) if settings else None)

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        database, _, name = table.rpartition(".")
        self._client.insert(
            name,
            [list(r) for r in rows],
            column_names=list(column_names),
            database=database or None,
            settings=dict(settings) if settings else None,
        )

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = self._client.query(sql, parameters=dict(parameters) if parameters else None)
        return [tuple(row) for row in result.result_rows]

    def close(self) -> None:
        self._client.close()


def connect_clickhouse(
    params: ClickHouseParams, *, get_client: Callable[..., Any] | None = None, timeout_s: float = 10.0
) -> ClickHouseConnectClient:
    """Open a ``clickhouse-connect`` HTTP client (``get_client`` is injectable for tests).

    Session ids are off: the shipper and readers may share one client across threads, and ClickHouse
    rejects concurrent queries in one HTTP session. Retries are the shipper's job, not the driver's.
    """
    if get_client is None:
        import clickhouse_connect  # a runtime dependency only in ClickHouse mode

        get_client = clickhouse_connect.get_client
    kwargs: dict[str, Any] = {
        "host": params["host"],
        "port": params["port"],
        "username": params["user"],
        "password": params["password"],
        "secure": params["secure"],
        "verify": params["verify"],
        "connect_timeout": timeout_s,
        "send_receive_timeout": max(timeout_s, 30.0),
        "query_retries": 0,
        "autogenerate_session_id": False,
        "client_name": "claude-sidecar",
    }
    if params["ca_cert"]:
        kwargs["ca_cert"] = params["ca_cert"]
    return ClickHouseConnectClient(get_client(**kwargs))


def dedup_token(events: Sequence[CallEvent]) -> str:
    """The batch's ``insert_deduplication_token``: a digest of its event ids, in order. Event ids are
    unique across sidecars, so two replicas never share a token; a retried batch always does."""
    digest = hashlib.sha256("\n".join(e.event_id for e in events).encode()).hexdigest()
    return f"sidecar-{digest}"


class ClickHouseStore:
    """ClickHouse implementation of ``EventStore``; also a recorder ``Sink`` (prefer the spooling
    :class:`sidecar.store.shipper.Shipper` in front of it, which survives outages).

    ``open()`` connects and, with ``migrate=True``, applies pending migrations; with ``migrate=False``
    (read-only use: ``report``) it only checks that a schema exists. A failed ``open`` leaves the store
    closed, so it can be retried. Every failure is raised as :class:`ClickHouseStoreError`.
    """

    name = "clickhouse"

    def __init__(
        self,
        connect: Callable[[], ClickHouseClient],
        schema: SchemaOptions,
        *,
        migrate: bool = True,
        secret: str = "",
    ) -> None:
        self.schema = schema
        self._connect = connect
        self._migrate = migrate
        self._secret = secret
        self._lock = threading.Lock()
        self._client: ClickHouseClient | None = None
        self._select = ", ".join(EVENT_COLUMNS)

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except ClickHouseStoreError:
            raise
        except Exception as exc:
            text = str(exc)
            if self._secret:  # as typed, and as it would appear inside a URL
                text = text.replace(self._secret, "***").replace(quote(self._secret, safe=""), "***")
            raise ClickHouseStoreError(
                f"ClickHouse {what} failed: {type(exc).__name__}: {text[:500]}"
            ) from None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def open(self) -> None:
        """Connect, then migrate (or check the schema). Idempotent."""
        with self._lock:
            if self._client is not None:
                return
            with self._mapped("open"):
                client = self._connect()
                try:
                    self._prepare(client)
                except BaseException:
                    client.close()
                    raise
            self._client = client

    def _prepare(self, client: ClickHouseClient) -> None:
        o = self.schema
        if self._migrate:
            migrate(client, o, time.time())
        elif schema_version(client, o) < 1:
            raise ClickHouseStoreError(f"no sidecar schema in ClickHouse database {o.database!r}")
        present = {
            str(row[0])
            for row in client.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'events'",
                {"db": o.database},
            )
        }
        # Reading a database still on an older schema: columns added later read as NULL (or their default).
        missing = {"provider": "'anthropic'"}
        self._select = ", ".join(
            c if c in present else f"{missing.get(c, 'NULL')} AS {c}" for c in EVENT_COLUMNS
        )

    def _require(self) -> ClickHouseClient:
        if self._client is None:
            raise RuntimeError("ClickHouse store is not open")
        return self._client

    def write_events(self, events: Sequence[CallEvent]) -> None:
        """Insert ``events`` as one block, deduplicated server-side by :func:`dedup_token`."""
        if not events:
            return
        client = self._require()
        settings = {
            "insert_deduplicate": 1,
            "insert_deduplication_token": dedup_token(events),
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "async_insert": 0,
        }
        with self._mapped("insert"):
            client.insert(
                self.schema.table("events"), [_event_to_row(e) for e in events], EVENT_COLUMNS, settings
            )

    write = write_events  # the recorder's Sink protocol

    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> list[CallEvent]:
        """Same contract as ``SQLiteStore.events``: ``since <= started_at < until``, ordered by
        ``(started_at, event_id)``, the oldest ``limit``."""
        client = self._require()
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for clause, key, value in (
            ("started_at_unix >= {since:Float64}", "since", since),
            ("started_at_unix < {until:Float64}", "until", until),
            ("session_id = {session_id:String}", "session_id", session_id),
        ):
            if value is not None:
                clauses.append(clause)
                params[key] = value
        sql = f"SELECT {self._select} FROM {self.schema.table('events')} FINAL"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY started_at_unix, event_id"
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            sql += " LIMIT {limit:UInt64}"
            params["limit"] = limit
        with self._mapped("query"):
            rows = client.query(sql, params)
        return [row_to_event(row) for row in rows]

    def purge(self, older_than: float) -> int:
        """Delete events (and their tool calls) that started before ``older_than``; return how many
        events. Retention normally happens through the tables' TTL; the session rollup is left to it."""
        client = self._require()
        o, cutoff = self.schema, float(older_than)
        with self._mapped("purge"):
            rows = client.query(
                f"SELECT count() FROM {o.table('events')} FINAL WHERE started_at_unix < {{cutoff:Float64}}",
                {"cutoff": cutoff},
            )
            count = int(rows[0][0]) if rows else 0
            if count:
                sync = {"mutations_sync": 2}
                events = o.table("events")
                client.command(
                    f"ALTER TABLE {events}{o.on_cluster} DELETE WHERE started_at_unix < {cutoff!r}", sync
                )
                client.command(
                    f"ALTER TABLE {o.table('tool_calls')}{o.on_cluster} "
                    f"DELETE WHERE started_at < toDateTime64({cutoff!r}, 6, 'UTC')",
                    sync,
                )
        return count

    def close(self) -> None:
        """Close the client. Idempotent; a later ``open()`` reconnects."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with suppress(Exception):  # closing a dead connection is not worth an error
                client.close()
