"""OAuth tokens for Vertex AI (SPEC R-CP-2): Application Default Credentials through ``google-auth``.

ADC (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials, workload identity, the metadata
server) is loaded on the first Vertex call, in a worker thread — never at start-up, where probing the
metadata server would be network I/O nobody asked for. google-auth's own ``refresh`` mints tokens, in a
worker thread, one refresh at a time: within ``REFRESH_AHEAD_S`` of expiry a refresh starts in the
background while calls keep the current token; only a missing token, or one about to expire, makes a
call wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sidecar.errors import CredentialsUnavailable

log = logging.getLogger("sidecar.providers")
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_AHEAD_S = 300.0
MUST_REFRESH_S = 30.0


def default_credentials() -> Any:
    """ADC with the cloud-platform scope (blocking: run it in a worker thread)."""
    import google.auth

    credentials, _project = google.auth.default(scopes=[SCOPE])
    return credentials


def refresh(credentials: Any) -> None:
    """Mint a new access token with google-auth's own transport (blocking)."""
    from google.auth.transport.requests import Request

    credentials.refresh(Request())


def _expires_at(credentials: Any) -> float:
    """Unix time the current token expires; +inf when google-auth gives no expiry."""
    expiry = getattr(credentials, "expiry", None)
    if not isinstance(expiry, datetime):
        return float("inf")
    if expiry.tzinfo is None:  # google-auth keeps naive UTC datetimes
        expiry = expiry.replace(tzinfo=UTC)
    return expiry.timestamp()


class GoogleTokens:
    """Bearer tokens for the Vertex upstream."""

    def __init__(
        self,
        load: Callable[[], Any] = default_credentials,
        mint: Callable[[Any], None] = refresh,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load = load
        self._mint = mint
        self._clock = clock
        self._credentials: Any = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._refreshing: asyncio.Future[str] | None = None

    async def token(self) -> str:
        """A valid access token. Raises ``CredentialsUnavailable`` when ADC has none or the refresh
        fails (the message names the failure's type, never a value)."""
        token, left = self._token, self._expires_at - self._clock()
        if token is not None and left > MUST_REFRESH_S:
            if left <= REFRESH_AHEAD_S:
                self._start_refresh()
            return token
        return await asyncio.shield(self._start_refresh())

    def _start_refresh(self) -> asyncio.Future[str]:
        running = self._refreshing
        if running is None:
            running = asyncio.ensure_future(asyncio.to_thread(self._refresh))
            running.add_done_callback(self._refreshed)
            self._refreshing = running
        return running

    def _refreshed(self, done: asyncio.Future[str]) -> None:
        self._refreshing = None
        if not done.cancelled() and done.exception() is not None and self._token is not None:
            log.warning("Google access token refresh failed: %s", type(done.exception()).__name__)

    def _refresh(self) -> str:
        try:
            credentials = self._credentials
            if credentials is None:
                credentials = self._credentials = self._load()
            self._mint(credentials)
            token = credentials.token
        except Exception as exc:
            raise CredentialsUnavailable(
                f"Google credentials for Vertex AI could not be used ({type(exc).__name__})."
            ) from exc
        if not isinstance(token, str) or not token:
            raise CredentialsUnavailable("Google credentials for Vertex AI gave no access token.")
        self._expires_at = _expires_at(credentials)
        self._token = token
        return token


__all__ = ["GoogleTokens", "default_credentials", "refresh"]
