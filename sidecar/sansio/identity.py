"""Who a call belongs to: the app and the session, from what clients already send (SPEC R-AC-3)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from sidecar.sansio.request import RequestInfo

HEADER = "header"
HARNESS_HEADER = "harness_header"
METADATA = "metadata"
FINGERPRINT = "fingerprint"
NONE = "none"

# Session headers that popular agent harnesses send on their own.
HARNESS_HEADERS = (b"x-claude-code-session-id",)
# Claude Code names the agent making a call, and for a subagent the agent that spawned it.
AGENT_HEADER = b"x-claude-code-agent-id"
PARENT_AGENT_HEADER = b"x-claude-code-parent-agent-id"
DEFAULT_APP = "default"
_MAX_ID = 200
# Older Claude Code builds: "user_<hash>_account_<uuid>_session_<uuid>".
_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{8,})$")


def _clean(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace").strip()[:_MAX_ID]
    else:
        # Text from the client's JSON may hold lone surrogates ("\udc80"), which no store, log line or
        # span can encode: one such id would make the whole batch of events fail to store.
        text = value.strip()[:_MAX_ID].encode("utf-8", "replace").decode("utf-8")
    return text or None


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:  # ASGI header names are lower-case
            return v
    return None


def session_from_metadata(user_id: str | None) -> str | None:
    """The session inside ``metadata.user_id``, when it carries one (JSON object or legacy form)."""
    if not user_id:
        return None
    if user_id.startswith("{"):
        try:
            doc = json.loads(user_id)
        except (ValueError, RecursionError):  # client text: deep nesting must not fail the call
            return None
        return (
            _clean(doc.get("session_id"))
            if isinstance(doc, dict) and isinstance(doc.get("session_id"), str)
            else None
        )
    match = _LEGACY_SESSION.search(user_id)
    return _clean(match.group(1)) if match else None


def resolve_session(
    headers: Sequence[tuple[bytes, bytes]], info: RequestInfo, session_header: bytes
) -> tuple[str, str]:
    """``(session_id, source)``: session header → harness header → metadata → fingerprint → none."""
    value = _clean(_header(headers, session_header))
    if value:
        return value, HEADER
    for name in HARNESS_HEADERS:
        value = _clean(_header(headers, name))
        if value:
            return value, HARNESS_HEADER
    value = session_from_metadata(info.metadata_user_id)
    if value:
        return value, METADATA
    if info.fingerprint:
        return "fp_" + info.fingerprint, FINGERPRINT
    return "", NONE


def resolve_agents(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """``(agent_id, parent_agent_id)`` from Claude Code's subagent headers; ``None`` for one not sent."""
    return _clean(_header(headers, AGENT_HEADER)), _clean(_header(headers, PARENT_AGENT_HEADER))


def resolve_app(headers: Sequence[tuple[bytes, bytes]], app_header: bytes) -> str:
    value = _clean(_header(headers, app_header))
    return value[:64] if value else DEFAULT_APP
