from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sidecar.core.events import CallEvent
from sidecar.core.usage import Usage
from sidecar.telemetry.logs import RequestLogSink, configure_logging, event_log_fields, redact

KEY = "sk-ant-api03-Xy9_Zk-12AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-AAAA"


@pytest.fixture(autouse=True)
def restore_sidecar_logger() -> Iterator[None]:
    logger = logging.getLogger("sidecar")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def full_event() -> CallEvent:
    return CallEvent(
        event_id="ev-1",
        started_at=1_700_000_000.25,
        app="billing",
        session_id="sess-9",
        session_source="header",
        method="POST",
        path="/v1/messages",
        operation="chat",
        stream=True,
        model="claude-sonnet-4-5",
        model_canonical="claude-sonnet-4-5-20250929",
        request_id="req_011",
        status=200,
        outcome="ok",
        error_type=None,
        stop_reason="tool_use",
        usage=Usage(
            input_tokens=12,
            output_tokens=345,
            cache_read_input_tokens=1000,
            cache_creation_input_tokens=300,
            cache_creation_5m=100,
            cache_creation_1h=200,
        ),
        cost_usd=0.0123456789,
        ttfb_s=0.2,
        ttft_s=0.25,
        duration_s=3.5,
        overhead_s=0.001,
        tool_use_ids=("toolu_1", "toolu_2"),
        tool_uses=("get_weather", "search"),
        cache_breakpoint_injected=True,
        system_hash="abc123",
        key_fingerprint="fp:deadbeef",
        request_bytes=2048,
        response_bytes=4096,
    )


def test_json_line_has_base_fields_and_extras() -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    logging.getLogger("sidecar.x").info("hello %s", "world", extra={"fields": {"a": 1, "level": "spoof"}})
    (line,) = lines(buf)
    assert line["message"] == "hello world"
    assert line["logger"] == "sidecar.x"
    assert line["level"] == "info"  # extras cannot override the base fields
    assert line["a"] == 1
    ts = str(line["timestamp"])
    assert ts.endswith("Z") and ts[10] == "T"


def test_configure_is_idempotent_and_honours_level() -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    configure_logging("warning", stream=buf)
    log = logging.getLogger("sidecar.y")
    log.info("hidden")
    log.warning("shown")
    assert [line["message"] for line in lines(buf)] == ["shown"]
    with pytest.raises(ValueError):
        configure_logging("verbose")


def test_import_has_no_logging_side_effect() -> None:
    code = "import logging, sidecar.telemetry.logs; print(len(logging.getLogger('sidecar').handlers))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_redact_masks_keys_and_bearer_tokens() -> None:
    assert redact(f"key={KEY} end") == "key=sk-ant-[REDACTED] end"
    assert redact("Authorization: Bearer xyz") == "Authorization: Bearer [REDACTED]"
    assert redact("authorization: bearer abc.DEF-ghi_jkl~/+==") == "authorization: bearer [REDACTED]"
    assert redact('{"x-api-key": "secret123"}') == '{"x-api-key": "[REDACTED]"}'
    plain = "POST /v1/messages 200 in 1.2s"
    assert redact(plain) == plain
    assert redact(redact(f"Bearer {KEY}")) == redact(f"Bearer {KEY}")


def test_formatter_redacts_messages_extras_and_exceptions() -> None:
    buf = io.StringIO()
    configure_logging("debug", stream=buf)
    log = logging.getLogger("sidecar.z")
    log.info("upstream said %s", f"invalid key {KEY}", extra={"fields": {"header": "Bearer xyz"}})
    try:
        raise RuntimeError(f"auth failed for {KEY}")
    except RuntimeError:
        log.exception("boom")
    raw = buf.getvalue()
    assert "sk-ant-api03" not in raw and "xyz" not in raw
    first, second = lines(buf)  # still valid JSON after masking
    assert first["message"] == "upstream said invalid key sk-ant-[REDACTED]"
    assert first["header"] == "Bearer [REDACTED]"
    assert "RuntimeError: auth failed for sk-ant-[REDACTED]" in str(second["exc_info"])


def test_request_log_sink_writes_one_line_per_event_without_prompt_or_key_fields() -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    sink = RequestLogSink()
    assert sink.name == "log"
    event = full_event()
    sink.write([event, event])
    sink.close()
    first, second = lines(buf)
    first.pop("timestamp"), second.pop("timestamp")
    assert first == second
    assert first["logger"] == "sidecar.requests"
    assert first["message"] == "POST /v1/messages -> 200 ok"
    expected = {
        "event_id": "ev-1",
        "app": "billing",
        "session_id": "sess-9",
        "method": "POST",
        "path": "/v1/messages",
        "operation": "chat",
        "stream": True,
        "model": "claude-sonnet-4-5",
        "provider": "anthropic",
        "request_id": "req_011",
        "status": 200,
        "outcome": "ok",
        "error_type": None,
        "stop_reason": "tool_use",
        "input_tokens": 12,
        "output_tokens": 345,
        "cache_read_input_tokens": 1000,
        "cache_write_5m_input_tokens": 100,
        "cache_write_1h_input_tokens": 200,
        "cost_usd": 0.0123456789,
        "ttft_s": 0.25,
        "duration_s": 3.5,
        "overhead_s": 0.001,
        "tool_uses": ["get_weather", "search"],
    }
    base = {"level", "logger", "message"}
    assert {k: v for k, v in first.items() if k not in base} == expected
    assert "fp:deadbeef" not in buf.getvalue() and "abc123" not in buf.getvalue()


def test_cache_write_split_absent_logs_all_as_5m() -> None:
    event = full_event()
    event.usage = Usage(cache_creation_input_tokens=300)
    fields = event_log_fields(event)
    assert (fields["cache_write_5m_input_tokens"], fields["cache_write_1h_input_tokens"]) == (300, 0)


def test_request_log_sink_is_silent_above_info() -> None:
    buf = io.StringIO()
    configure_logging("warning", stream=buf)
    RequestLogSink().write([full_event()])
    assert buf.getvalue() == ""


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_a_batch_is_written_once_one_line_per_event_and_propagates_to_other_handlers() -> None:
    stream = _CountingStream()
    configure_logging("info", stream=stream)
    events = []
    for i in range(5):
        event = full_event()
        event.event_id = f"ev-{i}"
        events.append(event)
    other = io.StringIO()
    extra = logging.StreamHandler(other)
    logging.getLogger("sidecar.requests").addHandler(extra)
    try:
        RequestLogSink().write(events)
    finally:
        logging.getLogger("sidecar.requests").removeHandler(extra)
    assert [line["event_id"] for line in lines(stream)] == [f"ev-{i}" for i in range(5)]
    assert stream.writes == 1  # one write (and flush) for the batch, not one per line
    assert len(other.getvalue().splitlines()) == 5  # a plain handler still gets every record


def test_text_format_is_one_readable_line_with_fields_and_redaction() -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf, fmt="text")
    fields = {"proxy": "http://127.0.0.1:8788", "note": "two words", "skipped": None, "n": 3}
    logging.getLogger("sidecar").info("sidecar ready", extra={"fields": fields})
    logging.getLogger("sidecar.x").warning("leaked x-api-key: %s", KEY)
    ready, leak = buf.getvalue().splitlines()
    assert not ready.startswith("{") and " INFO " in ready
    assert ready.endswith('sidecar ready  proxy=http://127.0.0.1:8788 note="two words" n=3')
    assert "WARNING" in leak and KEY not in leak and "[REDACTED]" in leak


def test_request_lines_follow_the_text_format() -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf, fmt="text")
    RequestLogSink().write([full_event()])
    (line,) = buf.getvalue().splitlines()
    assert "POST /v1/messages -> 200 ok" in line and "session_id=sess-9" in line and "error_type" not in line


def test_auto_format_is_text_on_a_terminal_and_json_otherwise() -> None:
    import os
    import pty

    configure_logging("info", stream=io.StringIO(), fmt="auto")  # a pipe or file: JSON
    handler = logging.getLogger("sidecar").handlers[-1]
    assert type(handler.formatter).__name__ == "JsonFormatter"
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            configure_logging("info", stream=tty, fmt="auto")
            logging.getLogger("sidecar").info("hello", extra={"fields": {"a": 1}})
            tty.flush()
            written = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert "hello  a=1" in written and "{" not in written
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", fmt="yaml")


def test_a_subagents_line_names_its_agent_and_parent() -> None:
    event = full_event()
    assert "agent_id" not in event_log_fields(event)  # no headers, no fields
    event.agent_id, event.parent_agent_id = "agent-sub-7", "agent-main-1"
    fields = event_log_fields(event)
    assert (fields["agent_id"], fields["parent_agent_id"]) == ("agent-sub-7", "agent-main-1")
