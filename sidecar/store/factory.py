"""Pick and wire the event store named by ``SIDECAR_STORE`` (SPEC R-ST-1..3).

* ``sqlite:///path`` — the embedded store does everything (the default).
* ``clickhouse://user:pass@host:8123/db`` in a serving process (``spool_path`` given) — the embedded
  SQLite store still records every event locally (sessions API, budget restore: fresh, this replica),
  and a :class:`Shipper` spools events to disk and ships them to ClickHouse for fleet-wide analytics.
* the same URL without a spool (``report`` / ``check``) — reads ClickHouse, never migrates it.

Building does no I/O and starts no thread; :meth:`EventStores.open` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from sidecar.core.events import Sink
from sidecar.store.base import EventStore
from sidecar.store.clickhouse import (
    ClickHouseClient,
    ClickHouseParams,
    ClickHouseStore,
    connect_clickhouse,
)
from sidecar.store.clickhouse_reads import ClickHouseReads
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.shipper import Shipper, ShipperHooks, ShipperOptions
from sidecar.store.spool import DEFAULT_MAX_BYTES, Spool
from sidecar.store.sqlite import SQLiteStore

DEFAULT_LOCAL_URL = "sqlite:///sidecar-data/events.db"
_SCHEMES = {"clickhouse": False, "clickhouses": True}  # scheme -> TLS
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_OPTIONS = ("secure", "verify", "ca_cert", "cluster")


def is_clickhouse_url(url: str) -> bool:
    # Not urlsplit: it raises on a malformed authority, and this runs before any validation.
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in _SCHEMES


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and messages). Never raises."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparseable: hide all the user information
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _flag(name: str, value: str, url: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be 0 or 1 in {redact_url(url)!r}")


def parse_clickhouse_url(url: str) -> ClickHouseParams:
    """``clickhouse://user:pass@host:8123/db?secure=1&verify=0&ca_cert=/ca.pem&cluster=name``.

    ``clickhouses://`` implies ``secure=1``. Defaults: user ``default``, empty password, port 8123 (8443
    with TLS), database ``default``, ``verify=1``. User and password are percent-decoded. Unknown options
    raise ``ValueError`` (a typo must not silently turn TLS off); messages show the URL redacted.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"not a clickhouse:// URL: {redact_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"clickhouse URL needs a host: {redact_url(url)!r}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown clickhouse URL option(s) {', '.join(unknown)} in {redact_url(url)!r}")
    secure = _SCHEMES[parts.scheme] or _flag("secure", options.get("secure", "0"), url)
    try:
        port = parts.port or (8443 if secure else 8123)
    except ValueError:
        raise ValueError(f"bad port in {redact_url(url)!r}") from None
    database = unquote(parts.path.strip("/")) or "default"
    if "/" in database:
        raise ValueError(f"clickhouse URL path must be one database name: {redact_url(url)!r}")
    return ClickHouseParams(
        user=unquote(parts.username or "") or "default",
        password=unquote(parts.password or ""),
        host=parts.hostname,
        port=port,
        database=database,
        secure=secure,
        verify=_flag("verify", options.get("verify", "1"), url),
        ca_cert=options.get("ca_cert") or None,
        cluster=options.get("cluster") or None,
    )


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``retention_days``: SQLite purge horizon and ClickHouse TTL (``<= 0``: keep forever).
    ``spool_path``: set in the serving process only (ClickHouse mode records through it).
    ``local_url``: the embedded store used beside ClickHouse."""

    retention_days: int = 30
    spool_path: Path | None = None
    local_url: str = DEFAULT_LOCAL_URL
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    shipper: ShipperOptions = field(default_factory=ShipperOptions)


@dataclass
class EventStores:
    """``local``: the embedded store (``None`` when only reading ClickHouse). ``analytics``: what
    ``report`` / ``check`` and dashboards read (``local`` itself in SQLite mode). ``shipper``: the
    ClickHouse sink of a serving process. ``fleet``: how to reach ClickHouse for reads (its connect
    function and schema), ``None`` in SQLite mode."""

    local: SQLiteStore | None
    analytics: EventStore
    shipper: Shipper | None = None
    fleet: tuple[Callable[[], ClickHouseClient], SchemaOptions] | None = None
    _fleet_reads: tuple[ClickHouseReads, ClickHouseClient] | None = field(
        default=None, init=False, repr=False
    )
    _fleet_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def fleet_reads(self) -> ClickHouseReads:
        """The read side on ClickHouse (SPEC R-RS-5), on a connection of its own opened at first use
        (the shipper's stays its thread's); ``LookupError`` in SQLite mode."""
        if self.fleet is None:
            raise LookupError("no ClickHouse store")
        with self._fleet_lock:
            if self._fleet_reads is None:
                connect, schema = self.fleet
                client = connect()
                self._fleet_reads = (ClickHouseReads(client, schema), client)
            return self._fleet_reads[0]

    @property
    def sinks(self) -> list[Sink]:
        """What the recorder writes to: the local store, then the shipper."""
        out: list[Sink] = []
        if self.local is not None:
            out.append(self.local)
        if self.shipper is not None:
            out.append(self.shipper)
        return out

    def open(self) -> EventStores:
        """Open the local store and start the shipper (ClickHouse itself is opened by the shipper's
        thread, so an unreachable server delays nothing); in read-only mode open ClickHouse now."""
        if self.local is not None:
            self.local.open()
        if self.shipper is not None:
            self.shipper.start()
        elif self.analytics is not self.local:
            self.analytics.open()
        return self

    def close(self) -> None:
        """Close everything (a recorder closes its sinks itself; this is for other users)."""
        if self.shipper is not None:
            self.shipper.stop()
        if self.local is not None:
            self.local.close()
        if self.analytics is not self.local:
            self.analytics.close()
        with self._fleet_lock:
            reads, self._fleet_reads = self._fleet_reads, None
        if reads is not None:
            reads[1].close()


def build_event_stores(
    url: str,
    config: StoreConfig,
    *,
    hooks: ShipperHooks | None = None,
    connect: Callable[[], ClickHouseClient] | None = None,
) -> EventStores:
    """Build (without opening) the stores for ``url``; ``ValueError`` for a bad URL (redacted).

    ``connect`` replaces the ``clickhouse-connect`` client factory (tests pass a chDB client).
    """
    if not is_clickhouse_url(url):
        local = SQLiteStore.from_url(url, retention_days=config.retention_days)
        return EventStores(local=local, analytics=local)
    params = parse_clickhouse_url(url)
    schema = SchemaOptions(
        database=params["database"], ttl_days=max(0, config.retention_days), cluster=params["cluster"]
    )
    factory = connect or (lambda: connect_clickhouse(params))
    serving = config.spool_path is not None
    remote = ClickHouseStore(factory, schema, migrate=serving, secret=params["password"])
    if config.spool_path is None:
        return EventStores(local=None, analytics=remote, fleet=(factory, schema))
    local = SQLiteStore.from_url(config.local_url, retention_days=config.retention_days)
    spool = Spool(config.spool_path, max_bytes=config.spool_max_bytes)
    shipper = Shipper(spool, remote, config.shipper, hooks)
    return EventStores(local=local, analytics=remote, shipper=shipper, fleet=(factory, schema))


def open_event_store(
    url: str,
    *,
    retention_days: int = 30,
    spool_path: Path | None = None,
    connect: Callable[[], ClickHouseClient] | None = None,
) -> EventStores:
    """Build and open: ``open_event_store(url).analytics`` is what ``report`` / ``check`` read."""
    config = StoreConfig(retention_days=retention_days, spool_path=spool_path)
    return build_event_stores(url, config, connect=connect).open()
