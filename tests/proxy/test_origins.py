"""One upstream client per cloud origin: made and opened once, shared, bounded, all closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.errors import InvalidRequest
from sidecar.proxy.origins import Origins


class Client:
    def __init__(self, origin: str, log: list[str]) -> None:
        self.origin, self.log = origin, log

    async def open(self) -> None:
        await asyncio.sleep(0.01)  # concurrent first calls must still share one client
        self.log.append("open " + self.origin)

    async def close(self) -> None:
        self.log.append("close " + self.origin)

    async def send(self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: Any, /) -> Any:
        return None


async def test_each_origin_gets_one_client_opened_once() -> None:
    log: list[str] = []
    origins = Origins(lambda origin: Client(origin, log), limit=2)
    a1, a2, b = await asyncio.gather(
        origins.get("https://a"), origins.get("https://a"), origins.get("https://b")
    )
    assert a1 is a2 and a1 is not b
    assert sorted(log) == ["open https://a", "open https://b"]
    with pytest.raises(InvalidRequest, match="limit 2"):
        await origins.get("https://c")
    assert await origins.get("https://a") is a1
    await origins.close()
    assert sorted(log[2:]) == ["close https://a", "close https://b"]


async def test_a_client_that_fails_to_open_is_not_kept() -> None:
    calls = []

    class Failing(Client):
        async def open(self) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise OSError("no")

    origins = Origins(lambda origin: Failing(origin, []))
    with pytest.raises(OSError):
        await origins.get("https://a")
    assert isinstance(await origins.get("https://a"), Failing) and len(calls) == 2
