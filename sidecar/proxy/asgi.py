"""Small pure-ASGI helpers shared by the proxy and the admin routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sidecar.errors import SidecarError, error_response_parts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorParts = Callable[[SidecarError], tuple[int, list[tuple[bytes, bytes]], bytes]]
# scope["extensions"] key under which the sidecar's own server offers a ``DisconnectHook``: an object
# whose ``callback`` it calls when the client's connection is lost before the response is complete.
DISCONNECT_HOOK = "sidecar.disconnect"


class ClientGone(Exception):
    """The client disconnected while the sidecar was still reading its request."""


async def send_bytes(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(
    send: Send,
    exc: SidecarError,
    extra: list[tuple[bytes, bytes]] | None = None,
    parts: ErrorParts = error_response_parts,
) -> None:
    """The sidecar's own error answer: Anthropic's shape, or a cloud route's (``parts``)."""
    status, headers, body = parts(exc)
    await send_bytes(send, status, headers + (extra or []), body)


async def read_body(receive: Receive, limit: int, too_large: Callable[[], SidecarError]) -> bytes:
    """The whole request body; raises ``too_large()`` past ``limit`` bytes, ``ClientGone`` on disconnect."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise too_large()
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
