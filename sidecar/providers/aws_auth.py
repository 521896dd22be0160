"""SigV4 for Bedrock (SPEC R-CP-1): botocore's standard credential chain, signer and refresh rules.

Credentials come from ``botocore``'s chain (environment, shared files and profiles, SSO, web identity,
container and instance metadata), loaded on first use in a worker thread — never at start-up, where an
instance-metadata probe would be network I/O nobody asked for. Refreshable credentials are refreshed
before they expire, in a worker thread: past botocore's advisory window (15 min) a refresh starts in the
background while calls keep signing with the current credentials; only within the last minute does a
call wait for it. The request path itself only signs (HMACs, microseconds). botocore is imported on
the first Bedrock call, not at start-up (it is a tenth of a second a process without Bedrock need not pay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sidecar.errors import CredentialsUnavailable

if TYPE_CHECKING:
    from botocore.credentials import Credentials, ReadOnlyCredentials

log = logging.getLogger("sidecar.providers")
Headers = Sequence[tuple[bytes, bytes]]
ADVISORY_S = 15 * 60  # botocore's advisory refresh window
MANDATORY_S = 60  # closer than this to expiry, a call waits for fresh credentials
SERVICE = "bedrock"  # the signing name of bedrock-runtime


def default_chain() -> Credentials | None:
    """botocore's standard credential chain (blocking: run it in a worker thread)."""
    from botocore.session import Session  # a heavy import, needed only once Bedrock is called

    creds: Credentials | None = Session().get_credentials()
    return creds


class AwsCredentials:
    """The chain's credentials, as frozen values that are safe to sign with on the event loop."""

    def __init__(self, load: Callable[[], Credentials | None] = default_chain) -> None:
        self._load = load
        self._source: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._refreshing: asyncio.Future[ReadOnlyCredentials] | None = None

    async def frozen(self) -> ReadOnlyCredentials:
        """Credentials to sign one request with. Raises ``CredentialsUnavailable`` when the chain has
        none (the message names the failure's type, never a value)."""
        frozen = self._frozen
        if frozen is not None and not self._due(MANDATORY_S):
            if self._due(ADVISORY_S):
                self._start_refresh()
            return frozen
        return await asyncio.shield(self._start_refresh())

    def _due(self, within_s: int) -> bool:
        from botocore.credentials import RefreshableCredentials

        source = self._source
        return isinstance(source, RefreshableCredentials) and source.refresh_needed(refresh_in=within_s)

    def _start_refresh(self) -> asyncio.Future[ReadOnlyCredentials]:
        """One refresh at a time; callers share it."""
        running = self._refreshing
        if running is None:
            running = asyncio.ensure_future(asyncio.to_thread(self._load_frozen))
            running.add_done_callback(self._refreshed)
            self._refreshing = running
        return running

    def _refreshed(self, done: asyncio.Future[ReadOnlyCredentials]) -> None:
        self._refreshing = None
        if not done.cancelled() and done.exception() is not None and self._frozen is not None:
            # A background refresh failed; calls go on with the current credentials until they expire.
            log.warning("AWS credential refresh failed: %s", type(done.exception()).__name__)

    def _load_frozen(self) -> ReadOnlyCredentials:
        try:
            source = self._source
            if source is None:
                source = self._load()
                if source is None:
                    raise CredentialsUnavailable("No AWS credentials found for Amazon Bedrock.")
                self._source = source
            frozen = source.get_frozen_credentials()  # refreshes a RefreshableCredentials when due
        except CredentialsUnavailable:
            raise
        except Exception as exc:
            raise CredentialsUnavailable(
                f"AWS credentials for Amazon Bedrock could not be loaded ({type(exc).__name__})."
            ) from exc
        if not frozen.access_key or not frozen.secret_key:
            raise CredentialsUnavailable("The AWS credentials found for Amazon Bedrock are incomplete.")
        self._frozen = frozen
        return frozen


class SigV4Signer:
    """Signs an upstream request for ``service`` in ``region``; the caller sends exactly what it returns."""

    def __init__(self, credentials: AwsCredentials, region: str, service: str = SERVICE) -> None:
        self.credentials = credentials
        self.region = region
        self.service = service

    async def sign(self, method: str, url: str, headers: Headers, body: bytes) -> list[tuple[bytes, bytes]]:
        """``headers`` plus ``X-Amz-Date``, ``X-Amz-Security-Token`` (temporary credentials) and
        ``Authorization``. ``url`` must be the full URL as it will be sent (its path percent-encoded
        as sent); ``body`` the final bytes: the signature covers both."""
        creds = await self.credentials.frozen()
        return sign_request(creds, self.region, self.service, method, url, headers, body)


def sign_request(
    creds: Any, region: str, service: str, method: str, url: str, headers: Headers, body: bytes
) -> list[tuple[bytes, bytes]]:
    """The signing itself (pure but for the clock botocore reads)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        # Header values are UTF-8 (the handler refuses others); sent as the same bytes that were signed.
        request.headers[name.decode("latin-1")] = value.decode("utf-8")
    SigV4Auth(creds, service, region).add_auth(request)
    return [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in request.headers.items()]


__all__ = ["AwsCredentials", "SigV4Signer", "default_chain", "sign_request"]
