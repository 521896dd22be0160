"""Logs of the ``sidecar`` logger hierarchy: JSON lines for machines, or text lines for people.

``SIDECAR_LOG_FORMAT``: ``json`` (one JSON object per line), ``text`` (``12:04:05 INFO  message
key=value ...``) or ``auto`` (text when the stream is a terminal, JSON otherwise).

Extra fields travel as ``logger.info("msg", extra={"fields": {...}})``. Every formatted line passes
through :func:`redact`, a last line of defence so that an API key never reaches a log even if some code
path puts one in a message or an exception. Per-request lines come from :class:`RequestLogSink`, a
recorder sink, so they are written off the request path (R-TM-4) and never contain prompt text or keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from sidecar.core.events import CallEvent

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_MASK = "[REDACTED]"
_ANTHROPIC_KEY = re.compile(r"sk-ant-[A-Za-z0-9_\-]+")
# Token characters per RFC 6750 (b64token); stops at quotes, so a JSON-encoded line stays valid JSON.
_BEARER = re.compile(r"\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
_API_KEY_HEADER = re.compile(r"""(x-api-key["']?\s*[:=]\s*["']?)[^\s"',;}]+""", re.IGNORECASE)
# Cloud credentials: AWS access key ids (long-term AKIA…, temporary ASIA…) and Google OAuth tokens.
_CLOUD_KEY = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b|\bya29\.[A-Za-z0-9_\-.]+")
_BASE_KEYS = ("timestamp", "level", "logger", "message")


def redact(text: str) -> str:
    """Mask anything that looks like a credential: ``sk-ant-…`` keys, ``Bearer <token>`` values,
    ``x-api-key: <value>`` pairs, AWS access key ids and Google OAuth tokens. Idempotent; text without
    credentials is returned unchanged."""
    low = text.lower()
    if "akia" in low or "asia" in low or "ya29." in low:
        text = _CLOUD_KEY.sub(_MASK, text)
    if "sk-ant-" not in low and "bearer" not in low and "x-api-key" not in low:
        return text  # the common case, without running three regular expressions over the line
    text = _ANTHROPIC_KEY.sub("sk-ant-" + _MASK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {_MASK}", text)
    return _API_KEY_HEADER.sub(lambda m: m.group(1) + _MASK, text)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``timestamp`` (RFC 3339, UTC), ``level``, ``logger``,
    ``message``, then the record's ``fields`` extras (which cannot override those four), plus
    ``exc_info`` / ``stack_info`` text when present. The whole line is passed through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra: dict[str, Any] = {}
        if record.exc_info:
            extra["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            extra["stack_info"] = self.formatStack(record.stack_info)
        return json_line(
            fields if isinstance(fields, Mapping) else None,
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            extra,
        )


class TextFormatter(logging.Formatter):
    """One line for people: local time, level, message, then the ``fields`` extras as ``key=value``
    (``None`` left out), and any exception text below. Redacted like the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping) and fields:
            line += "  " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact(line)


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if text and not any(c.isspace() for c in text) else json.dumps(text)


def _rfc3339_ms(created: float, _cache: dict[int, str] = {}) -> str:  # noqa: B006 - a per-second memo
    second = int(created)
    head = _cache.get(second)
    if head is None:
        _cache.clear()  # one entry: log lines arrive in time order
        head = _cache[second] = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{int((created - second) * 1000):03d}Z"


def json_line(
    fields: Mapping[str, Any] | None,
    created: float,
    level: str,
    logger: str,
    message: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """One redacted JSON log line (no newline): ``fields``, then the four base keys (which ``fields``
    cannot override), then ``extra`` (exception text)."""
    payload: dict[str, Any] = dict(fields) if fields else {}
    payload["timestamp"] = _rfc3339_ms(created)
    payload["level"] = level
    payload["logger"] = logger
    payload["message"] = message
    if extra:
        payload.update(extra)
    try:
        line = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):  # e.g. an int beyond 64 bits
        line = json.dumps(payload, default=str, ensure_ascii=False)
    return redact(line)


class _JsonHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs (marked, so a second call replaces it)."""

    def emit_many(self, records: Sequence[logging.LogRecord]) -> None:
        """Write several records with one write and one flush (the recorder logs a batch at a time)."""
        if not records:
            return
        try:
            self.write_text("".join(self.format(r) + self.terminator for r in records))
        except Exception:
            self.handleError(records[0])

    def write_text(self, text: str) -> None:
        """Write already formatted lines (each ending in the terminator), with one flush."""
        with self.lock or contextlib.nullcontext():
            self.stream.write(text)
            self.flush()


def _handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record from ``logger`` reaches, walking up while loggers propagate."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    return found


def configure_logging(level: str = "info", stream: TextIO | None = None, fmt: str = "auto") -> None:
    """Send the ``sidecar`` logger hierarchy to ``stream`` (default: ``sys.stderr`` at call time) at
    ``level`` (debug|info|warning|error|critical) as ``fmt`` lines: ``json``, ``text``, or ``auto``
    (text when ``stream`` is a terminal). ``ValueError`` for anything else.

    Idempotent: a repeated call replaces the handler it installed earlier instead of adding another.
    The hierarchy stops propagating to the root logger so lines are not written twice.
    """
    try:
        numeric = _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(_LEVELS)}") from None
    if fmt not in ("auto", "text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; expected auto, text or json")
    logger = logging.getLogger("sidecar")
    for handler in list(logger.handlers):
        if isinstance(handler, _JsonHandler):
            logger.removeHandler(handler)
    out = stream if stream is not None else sys.stderr
    handler = _JsonHandler(out)
    text = fmt == "text" or (fmt == "auto" and _is_terminal(out))
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(numeric)
    logger.propagate = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def event_log_fields(event: CallEvent) -> dict[str, object]:
    """The fields of one request log line. Only metadata: no prompt or completion text, no key material
    (not even the key fingerprint)."""
    usage = event.usage
    write_5m, write_1h = usage.write_buckets()
    return {
        "event_id": event.event_id,
        "app": event.app,
        "session_id": event.session_id,
        "method": event.method,
        "path": event.path,
        "operation": event.operation,
        "stream": event.stream,
        "model": event.model,
        "provider": event.provider,
        "request_id": event.request_id,
        "status": event.status,
        "outcome": event.outcome,
        "error_type": event.error_type,
        "stop_reason": event.stop_reason,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "cache_write_5m_input_tokens": write_5m,
        "cache_write_1h_input_tokens": write_1h,
        "cost_usd": event.cost_usd,
        "ttft_s": event.ttft_s,
        "duration_s": event.duration_s,
        "overhead_s": event.overhead_s,
        "tool_uses": list(event.tool_uses),
        # Claude Code's agent ids (R-RS-4), when the client sent them.
        **{k: v for k in ("agent_id", "parent_agent_id") if (v := getattr(event, k)) is not None},
        **_cache_fields(event),
    }


def _cache_fields(event: CallEvent) -> dict[str, object]:
    """The cache diagnosis of a messages call, when it has one (the detail holds no prompt text)."""
    out: dict[str, object] = {}
    if event.cache_outcome is not None:
        out["cache_outcome"] = event.cache_outcome
    if event.cache_miss_reason is not None:
        out["cache_miss_reason"] = event.cache_miss_reason
        out["cache_miss_detail"] = event.cache_miss_detail
        out["cache_missed_tokens"] = event.cache_missed_tokens
        out["cache_miss_cost_usd"] = event.cache_miss_cost_usd
    if event.api_cache_miss_reason is not None:
        out["api_cache_miss_reason"] = event.api_cache_miss_reason
    return out


def _request_message(event: CallEvent) -> str:
    return f"{event.method} {event.path} -> {event.status} {event.outcome}"


def _plain_json(handler: logging.Handler) -> bool:
    return (
        isinstance(handler, _JsonHandler)
        and not handler.filters
        and handler.level <= logging.INFO
        and type(handler.formatter) is JsonFormatter
        and handler.terminator == "\n"
    )


class RequestLogSink:
    """Recorder sink writing one info-level JSON line per event (see :func:`event_log_fields`)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("sidecar.requests")

    def write(self, events: Sequence[CallEvent]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handlers = _handlers(logger)
        if not logger.filters and all(_plain_json(h) for h in handlers):
            self._write_direct(events, handlers)
            return
        records = []
        for event in events:
            record = logger.makeRecord(
                logger.name,
                logging.INFO,
                __file__,
                0,
                _request_message(event),
                (),
                None,
                extra={"fields": event_log_fields(event)},
            )
            if logger.filter(record):
                records.append(record)
        for handler in handlers:
            chosen = [r for r in records if r.levelno >= handler.level]
            if isinstance(handler, _JsonHandler) and not handler.filters:
                handler.emit_many(chosen)  # one write per batch instead of a write and flush per line
            else:
                for record in chosen:
                    handler.handle(record)

    def _write_direct(self, events: Sequence[CallEvent], handlers: Sequence[logging.Handler]) -> None:
        """The usual configuration (our JSON handler only, no filters): the same lines as the logging
        path, without building a LogRecord per event, which costs more than the line itself."""
        if not handlers:
            return
        name, now = self._logger.name, time.time()
        text = "".join(
            json_line(
                event_log_fields(event),
                now,
                "info",
                name,
                _request_message(event),
            )
            + "\n"
            for event in events
        )
        for handler in handlers:
            assert isinstance(handler, _JsonHandler)
            try:
                handler.write_text(text)
            except Exception:
                handler.handleError(logging.makeLogRecord({"msg": "request log write failed"}))

    def close(self) -> None:
        """Nothing to release: handlers belong to the logging configuration."""
