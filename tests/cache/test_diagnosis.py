"""The per-session diagnoser: bounded state, and the opt-in it adds in ``api`` mode (bytes otherwise kept)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from sidecar.cache.diagnosis import BETA, CacheDiagnoser
from sidecar.core.events import CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.usage import Usage

RAW = b'{ "model": "claude-sonnet-4-5",\n  "messages": [{"role": "user", "content": "hi"}] }\n'


def doc(raw: bytes = RAW) -> dict[str, Any]:
    value = orjson.loads(raw)
    assert isinstance(value, dict)
    return value


def finished(session: str, read: int = 0, written: int = 0) -> CallEvent:
    usage = Usage(input_tokens=5, cache_read_input_tokens=read, cache_creation_input_tokens=written)
    return CallEvent(
        event_id="e", started_at=1.79e9, app="a", session_id=session, session_source="header",
        method="POST", path="/v1/messages", operation="chat", stream=False, model="claude-sonnet-4-5",
        status=200, usage=usage,
    )  # fmt: skip


def test_api_mode_appends_the_opt_in_and_keeps_every_other_byte() -> None:
    diag = CacheDiagnoser("api")
    probe = diag.probe("s", doc(), RAW, "claude-sonnet-4-5", 0)
    body, headers = diag.opt_in(probe, doc(), RAW, [(b"anthropic-version", b"2023-06-01")])
    assert body == RAW.rstrip()[:-1].rstrip() + b',"diagnostics":{"previous_message_id":null}}\n'
    assert json.loads(body)["diagnostics"] == {"previous_message_id": None}
    assert headers == [(b"anthropic-beta", BETA)]
    assert probe is not None
    diag.finish(probe, finished("s", written=100), PriceTable.load(None), "msg_01abc")
    probe = diag.probe("s", doc(), RAW, "claude-sonnet-4-5", 0)
    body, headers = diag.opt_in(probe, doc(), RAW, [(b"anthropic-beta", b"other-2025-01-01")])
    assert json.loads(body)["diagnostics"] == {"previous_message_id": "msg_01abc"}
    assert headers == [(b"anthropic-beta", b"other-2025-01-01," + BETA)]
    assert diag.opt_in(probe, doc(), RAW, [(b"anthropic-beta", b"x, " + BETA)])[1] == []


def test_api_mode_leaves_a_clients_own_request_alone_and_handles_an_empty_object() -> None:
    diag = CacheDiagnoser("api")
    own = b'{"model":"m","messages":[],"diagnostics":{"previous_message_id":"msg_9"}}'
    assert diag.opt_in(None, doc(own), own, []) == (own, [])
    body, _ = diag.opt_in(None, {}, b" {} ", [])
    assert body == b' {"diagnostics":{"previous_message_id":null}} '


def test_passive_and_off_modes() -> None:
    passive, off = CacheDiagnoser("passive"), CacheDiagnoser("off")
    probe = passive.probe("s", doc(), RAW, "m", 0)
    assert probe is not None and passive.opt_in(probe, doc(), RAW, []) == (RAW, [])
    assert off.probe("s", doc(), RAW, "m", 0) is None
    assert passive.probe("", doc(), RAW, "m", 0) is None  # no session, nothing to compare with
    with pytest.raises(ValueError):
        CacheDiagnoser("sometimes")


def test_sessions_are_kept_least_recently_used_first_out() -> None:
    diag = CacheDiagnoser(max_sessions=2)
    prices = PriceTable.load(None)
    for session in ("a", "b", "a", "c"):
        probe = diag.probe(session, doc(), RAW, "claude-sonnet-4-5", 0)
        assert probe is not None
        diag.finish(probe, finished(session), prices, None)
    assert diag.sessions == 2
    assert diag.probe("b", doc(), RAW, "m", 0).prev is None  # type: ignore[union-attr]  # dropped
    assert diag.probe("a", doc(), RAW, "m", 0).prev is not None  # type: ignore[union-attr]


def test_a_failed_call_changes_nothing() -> None:
    diag = CacheDiagnoser()
    probe = diag.probe("s", doc(), RAW, "claude-sonnet-4-5", 0)
    assert probe is not None
    failed = finished("s")
    failed.status = 529
    assert diag.finish(probe, failed, PriceTable.load(None), "msg_1") is None
    assert failed.cache_outcome is None and diag.sessions == 0
