"""An older 0.x SDK (API version 2023-06-01, x-api-key, ?beta=true paths) works through the sidecar.

The 0.x SDK lives in a second virtual environment that the test command creates; the test runs a
client script there against a real sidecar and compares with the same script run directly.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY, require_service

CLIENT = r"""
import json, sys
import anthropic
assert anthropic.__version__.startswith("0."), anthropic.__version__
client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
out = {"version": anthropic.__version__}
msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                             messages=[{"role": "user", "content": "Hello"}],
                             extra_headers={"x-session-id": "sdk0"})
out["create"] = msg.model_dump()
with client.messages.stream(model="claude-haiku-4-5", max_tokens=32,
                            messages=[{"role": "user", "content": "Stream please"}],
                            extra_headers={"x-session-id": "sdk0"}) as s:
    out["stream"] = s.get_final_message().model_dump()
beta = client.beta.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                                   messages=[{"role": "user", "content": "beta"}],
                                   betas=["token-counting-2024-11-01"],
                                   extra_headers={"x-session-id": "sdk0"})
out["beta"] = beta.model_dump()
out["count"] = client.messages.count_tokens(model="claude-sonnet-4-5",
                                            messages=[{"role": "user", "content": "Hello"}]).input_tokens
out["models"] = [m.id for m in client.models.list()]
print(json.dumps(out))
"""


def _python() -> str | None:
    path = os.environ.get("SIDECAR_SDK0_PYTHON") or str(
        Path(__file__).resolve().parents[2] / ".venv-sdk0/bin/python"
    )
    return path if Path(path).exists() else None


def _run(python: str, url: str) -> dict[str, object]:
    proc = subprocess.run([python, "-c", CLIENT, url, API_KEY], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout))


def test_sdk_0x_through_sidecar_matches_direct(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    python = _python()
    require_service(python is not None, "the 0.x SDK environment (.venv-sdk0, made by scripts/test)")
    assert python is not None
    direct = _run(python, fake.url)
    proxied = _run(python, sidecar.url)
    assert proxied == direct
    versions = {r.header("anthropic-version") for r in fake.requests}
    assert versions == {"2023-06-01"}
    assert any(r.query_string == "beta=true" for r in fake.requests)  # ?beta=true kept verbatim
    assert all(r.header("x-api-key") == API_KEY for r in fake.requests)
    events = sidecar.wait_events(3, session_id="sdk0")
    assert [e.stream for e in events] == [False, True, False]
    assert all(e.cost_usd and e.cost_usd > 0 for e in events)


def test_sdk_2x_uses_bearer_and_new_version(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    client.messages.create(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
    )
    seen = fake.requests[-1]
    if not anthropic.__version__.startswith("2."):
        pytest.skip("the pinned SDK is not 2.x")
    assert seen.header("anthropic-version") == "2026-10-21"
    assert seen.header("authorization") == f"Bearer {API_KEY}"
