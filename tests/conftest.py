"""Shared fixtures: the project's fake Anthropic upstream and a real sidecar on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeConfig, FakeUpstream
from tests.net import free_port
from tests.redis_server import RedisServer

__all__ = ["free_port"]

API_KEY = "sk-ant-api03-TESTKEY-0123456789abcdef-do-not-leak"


def require_service(found: bool, what: str) -> None:
    """Fail in CI when a service the test needs is missing; skip with a message on a laptop."""
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI but was not found")
    pytest.skip(f"{what} not available on this machine")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free 127.0.0.1 port, stopped after the test."""
    binary = shutil.which("redis-server")
    require_service(binary is not None, "redis-server (apt-get install redis-server)")
    assert binary is not None
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def slow_fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeConfig(first_token_delay_s=0.2, chunk_delay_s=0.05, deltas=10)) as upstream:
        yield upstream


@pytest.fixture
def make_sidecar(tmp_path: Path) -> Iterator[Callable[..., RunningSidecar]]:
    running: list[RunningSidecar] = []

    def make(upstream_url: str, **overrides: Any) -> RunningSidecar:
        settings = Settings(
            upstream_url=upstream_url,
            store=f"sqlite:///{tmp_path}/events.db",
            port=0,
            **overrides,
        )
        sidecar = RunningSidecar(settings).start()
        running.append(sidecar)
        return sidecar

    yield make
    for sidecar in running:
        sidecar.stop()


@pytest.fixture
def sidecar(fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]) -> RunningSidecar:
    return make_sidecar(fake.url)
