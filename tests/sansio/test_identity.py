from __future__ import annotations

import json

from sidecar.sansio.identity import resolve_agents, resolve_app, resolve_session
from sidecar.sansio.request import inspect_body


def _info(**body: object):  # type: ignore[no-untyped-def]
    return inspect_body(json.dumps({"messages": [{"role": "user", "content": "hi"}], **body}).encode())


def test_session_header_wins() -> None:
    headers = [(b"x-session-id", b"abc"), (b"x-claude-code-session-id", b"cc")]
    assert resolve_session(headers, _info(), b"x-session-id") == ("abc", "header")


def test_claude_code_shaped_request() -> None:
    user_id = json.dumps({"device_id": "d", "account_uuid": "a", "session_id": "5e1f-sess"})
    headers = [(b"x-claude-code-session-id", b"5e1f-sess")]
    assert resolve_session(headers, _info(metadata={"user_id": user_id}), b"x-session-id") == (
        "5e1f-sess",
        "harness_header",
    )
    assert resolve_session([], _info(metadata={"user_id": user_id}), b"x-session-id") == (
        "5e1f-sess",
        "metadata",
    )


def test_legacy_metadata_form_and_plain_user_id() -> None:
    legacy = "user_abc123_account_0000-1111_session_9f8e7d6c-aaaa"
    assert resolve_session([], _info(metadata={"user_id": legacy}), b"x-session-id") == (
        "9f8e7d6c-aaaa",
        "metadata",
    )
    sid, source = resolve_session([], _info(metadata={"user_id": "plain-user"}), b"x-session-id")
    assert source == "fingerprint" and sid.startswith("fp_")


def test_custom_session_header_and_app() -> None:
    headers = [(b"x-conversation", b"conv-1"), (b"x-app-name", b"voice")]
    assert resolve_session(headers, _info(), b"x-conversation") == ("conv-1", "header")
    assert resolve_app(headers, b"x-app-name") == "voice"
    assert resolve_app([], b"x-app-name") == "default"


def test_no_body_no_session() -> None:
    assert resolve_session([], inspect_body(b""), b"x-session-id") == ("", "none")


def test_claude_code_agent_headers() -> None:
    sub = [(b"x-claude-code-agent-id", b" sub-7 "), (b"x-claude-code-parent-agent-id", b"main-1")]
    assert resolve_agents(sub) == ("sub-7", "main-1")
    assert resolve_agents([(b"x-claude-code-agent-id", b"main-1")]) == ("main-1", None)
    assert resolve_agents([(b"x-session-id", b"s")]) == (None, None)
    assert resolve_agents([(b"x-claude-code-agent-id", b"   ")]) == (None, None)  # blank is absent


def test_agent_ids_are_bounded_and_decodable() -> None:
    long = b"a" * 5000
    (agent, parent) = resolve_agents(
        [(b"x-claude-code-agent-id", long), (b"x-claude-code-parent-agent-id", b"\xff\xfeab")]
    )
    assert agent == "a" * 200
    assert parent == "\ufffd\ufffdab" and parent.encode("utf-8")  # invalid bytes replaced, storable
