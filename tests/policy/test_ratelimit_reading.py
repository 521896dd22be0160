"""Rate-limit headers are read per app and key at most every RATELIMIT_EVERY_S (and on every 429): the
gauges and the headroom show the latest values, so reading every answer would only cost the request path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sidecar.app import build_sidecar
from sidecar.policy import calls
from sidecar.policy.calls import RATELIMIT_EVERY_S, SidecarPolicies
from sidecar.settings import Settings
from tests.store.test_sqlite import minimal_event


def test_an_app_and_key_is_read_once_per_interval_and_on_every_429(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_sidecar(Settings(upstream_url="http://127.0.0.1:9", store=f"sqlite:///{tmp_path}/e.db"))
    policies = app.proxy.deps.policies
    assert isinstance(policies, SidecarPolicies)
    now = [1000.0]
    monkeypatch.setattr(calls.time, "monotonic", lambda: now[0])
    a = minimal_event(app="billing", key_fingerprint="kf_a", status=200)
    b = replace(a, key_fingerprint="kf_b")
    assert policies._ratelimit_due(a) and policies._ratelimit_due(b)  # first answer of each source
    now[0] += RATELIMIT_EVERY_S / 2
    assert not policies._ratelimit_due(a)
    assert policies._ratelimit_due(replace(a, status=429))  # a refusal is always read
    now[0] += 2 * RATELIMIT_EVERY_S
    assert policies._ratelimit_due(a) and policies._ratelimit_due(b)
