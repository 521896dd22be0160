"""The minimal ClickHouse client interface on chDB: a real ClickHouse engine inside this process.

Used by tests (no ClickHouse server is needed) and usable for local experiments. chDB runs one embedded
server per process, bound to one data directory at a time: close a client before opening another with a
different ``path``. Calls are serialised by a lock, as the embedded session is not meant to be shared
between threads.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_JSON_SETTINGS = "output_format_json_quote_64bit_integers = 0, output_format_json_quote_denormals = 1"


def _literal(value: Any) -> str:
    """A ClickHouse literal for a setting value."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _settings_clause(settings: Mapping[str, Any] | None) -> str:
    if not settings:
        return ""
    return " SETTINGS " + ", ".join(f"{k} = {_literal(v)}" for k, v in settings.items())


def _param(value: Any) -> Any:
    # Server-side parameters travel in ClickHouse's escaped text format, as clickhouse-connect sends them.
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return value


def _json_value(value: Any) -> Any:
    # JSON has no NaN/Infinity; ClickHouse's JSON input reads them as quoted strings.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


class ChdbClient:
    """``command`` / ``insert`` / ``query`` (see ``sidecar.store.clickhouse.ClickHouseClient``) on chDB.

    ``path`` is the data directory (created if missing). Errors surface as chDB's ``RuntimeError``.
    """

    def __init__(self, path: str | Path) -> None:
        import chdb.session  # imported here: chDB is a test dependency, not a runtime one

        self.path = Path(path)
        self._lock = threading.Lock()
        self._owner = True
        make: Any = chdb.session.Session  # untyped library
        self._session: Any = make(str(self.path))

    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> Any:
        """Run a statement; return its text output (often empty)."""
        with self._lock:
            return str(self._session.query(sql + _settings_clause(settings), "TabSeparated"))

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert ``rows`` (values in ``column_names`` order) as one block, through JSONEachRow."""
        if not rows:
            return
        names = list(column_names)
        body = "\n".join(
            json.dumps({n: _json_value(v) for n, v in zip(names, row, strict=True)}) for row in rows
        )
        columns = ", ".join(f"`{n}`" for n in names)
        sql = f"INSERT INTO {table} ({columns}){_settings_clause(settings)} FORMAT JSONEachRow\n{body}"
        with self._lock:
            self._session.query(sql, "TabSeparated")

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a ``SELECT`` as tuples of Python values; ``{name:Type}`` placeholders bind server-side."""
        full = f"{sql.rstrip().rstrip(';')}\nSETTINGS {_JSON_SETTINGS}"  # newline: sql may end in a comment
        with self._lock:
            params = {k: _param(v) for k, v in (parameters or {}).items()}
            raw = self._session.query(full, "JSONCompact", params=params)
        text = str(raw)
        if not text.strip():
            return []
        return [tuple(row) for row in json.loads(text)["data"]]

    def borrow(self) -> ChdbClient:
        """Another handle on the same engine whose ``close`` leaves the engine running: stores close
        their client, and a process has only one embedded engine to share between them."""
        other = object.__new__(ChdbClient)
        other.path, other._lock, other._owner, other._session = self.path, self._lock, False, self._session
        return other

    def close(self) -> None:
        """Shut the embedded server down (a borrowed handle only lets go of it). Idempotent."""
        with self._lock:
            if self._session is not None and self._owner:
                self._session.close()
            self._session = None
