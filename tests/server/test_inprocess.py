"""The in-process runner the tests use: one server per sidecar, however it is entered."""

from __future__ import annotations

import threading
from pathlib import Path

import anthropic

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream


def test_start_then_with_serves_one_sidecar_once(fake: FakeUpstream, tmp_path: Path) -> None:
    # ``with s.start():`` calls start() and then __enter__ (start() again): a second server thread would
    # serve the same sidecar on another loop, its upstream pool then used across loops.
    running = RunningSidecar(Settings(upstream_url=fake.url, store=f"sqlite:///{tmp_path}/e.db", port=0))
    before = {t.ident for t in threading.enumerate() if t.name == "sidecar-under-test"}
    with running.start():
        threads = {t.ident for t in threading.enumerate() if t.name == "sidecar-under-test"} - before
        assert len(threads) == 1
        client = anthropic.Anthropic(base_url=running.url, api_key="sk-ant-test", max_retries=0)
        for i in range(5):  # each call reaches the upstream through this sidecar's one pool
            msg = client.messages.create(
                model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": f"{i}"}]
            )
            assert msg.usage.output_tokens > 0
