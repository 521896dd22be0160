"""Upstream credentials: loaded lazily off the loop, refreshed before expiry, never shown."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from sidecar.errors import CredentialsUnavailable
from sidecar.providers.aws_auth import AwsCredentials
from sidecar.providers.google_auth import MUST_REFRESH_S, REFRESH_AHEAD_S, GoogleTokens
from sidecar.testing.fake_vertex import FakeVertex
from tests.cloud import fake_vertex, vertex_adc

__all__ = ["fake_vertex", "vertex_adc"]
SECRET = "very-secret-value-0001"


async def test_aws_credentials_load_once_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()
    calls: list[int] = []

    def load() -> Credentials:
        calls.append(threading.get_ident())
        return Credentials("AKIDTEST", SECRET)

    creds = AwsCredentials(load)
    frozen = await asyncio.gather(*(creds.frozen() for _ in range(5)))
    assert {f.access_key for f in frozen} == {"AKIDTEST"}
    assert len(calls) == 1 and calls[0] != loop_thread
    await creds.frozen()
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("load", "message"),
    [
        (lambda: None, "No AWS credentials found"),
        (lambda: Credentials("AKIDTEST", ""), "incomplete"),
    ],
)
async def test_no_aws_credentials_is_a_clear_error(load: Any, message: str) -> None:
    with pytest.raises(CredentialsUnavailable, match=message):
        await AwsCredentials(load).frozen()


async def test_a_failing_chain_names_the_failure_not_its_values() -> None:
    def load() -> Credentials:
        raise RuntimeError(f"profile has secret {SECRET}")

    with pytest.raises(CredentialsUnavailable) as failure:
        await AwsCredentials(load).frozen()
    assert "RuntimeError" in failure.value.message and SECRET not in failure.value.message


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_refreshable_aws_credentials_refresh_ahead_and_wait_only_at_the_end() -> None:
    clock = Clock()
    served: list[str] = []

    def fetch() -> dict[str, str]:
        served.append(f"AKID{len(served)}")
        expiry = clock.now + timedelta(minutes=60)
        return {
            "access_key": served[-1],
            "secret_key": SECRET,
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    first = fetch()
    source = RefreshableCredentials(
        first["access_key"],
        first["secret_key"],
        first["token"],
        datetime.fromisoformat(first["expiry_time"]),
        fetch,
        "test",
        time_fetcher=clock,
    )
    creds = AwsCredentials(lambda: source)
    assert (await creds.frozen()).access_key == "AKID0"
    clock.now += timedelta(minutes=50)  # 10 min left: in the advisory window
    assert (await creds.frozen()).access_key == "AKID0"  # served at once, refresh in the background
    for _ in range(500):  # the background refresh lands without any call waiting for it
        if (await creds.frozen()).access_key == "AKID1":
            break
        await asyncio.sleep(0.01)
    assert (await creds.frozen()).access_key == "AKID1" and len(served) == 2
    clock.now += timedelta(minutes=59, seconds=30)  # 30 s left: a call waits for fresh credentials
    assert (await creds.frozen()).access_key == "AKID2"


class FakeGoogleCredentials:
    def __init__(self, clock: list[float], lifetime_s: float = 3600.0, fail: bool = False) -> None:
        self.clock, self.lifetime_s, self.fail = clock, lifetime_s, fail
        self.token: str | None = None
        self.expiry: datetime | None = None
        self.minted = 0

    def refresh(self) -> None:
        if self.fail:
            raise RuntimeError(f"token endpoint said {SECRET}")
        self.minted += 1
        self.token = f"ya29.t{self.minted}"
        self.expiry = datetime.fromtimestamp(self.clock[0] + self.lifetime_s, UTC).replace(tzinfo=None)


async def test_google_tokens_are_minted_once_and_refreshed_ahead_of_expiry() -> None:
    now = [1_000_000.0]
    source = FakeGoogleCredentials(now)
    tokens = GoogleTokens(load=lambda: source, mint=lambda c: c.refresh(), clock=lambda: now[0])
    assert set(await asyncio.gather(*(tokens.token() for _ in range(5)))) == {"ya29.t1"}
    assert source.minted == 1
    now[0] += 3600 - REFRESH_AHEAD_S + 10  # inside the refresh-ahead window
    assert await tokens.token() == "ya29.t1"  # not waited for
    for _ in range(500):
        if await tokens.token() == "ya29.t2":
            break
        await asyncio.sleep(0.01)
    assert await tokens.token() == "ya29.t2" and source.minted == 2
    now[0] += 3600 - MUST_REFRESH_S + 1  # about to expire: the call waits
    assert await tokens.token() == "ya29.t3"


async def test_a_failed_refresh_is_a_clear_error_without_values() -> None:
    now = [0.0]
    source = FakeGoogleCredentials(now, fail=True)
    tokens = GoogleTokens(load=lambda: source, mint=lambda c: c.refresh(), clock=lambda: now[0])
    with pytest.raises(CredentialsUnavailable) as failure:
        await tokens.token()
    assert "RuntimeError" in failure.value.message and SECRET not in failure.value.message


async def test_adc_with_the_test_service_account_gets_the_fakes_token(
    fake_vertex: FakeVertex, vertex_adc: Path
) -> None:
    tokens = GoogleTokens()  # the real path: google.auth.default() and google-auth's refresh
    token = await tokens.token()
    assert fake_vertex.tokens.valid(token)
    assert await tokens.token() == token and fake_vertex.tokens.minted == 1
