"""An unexpected error inside the sidecar: the client gets Anthropic's 500 ``api_error`` (or, once the
answer's headers are out, the stream ends abruptly), and the call is still recorded exactly once.

Failures are injected with real objects implementing the same interfaces (a price table that cannot be
read, a budget service that fails, an upstream whose answer breaks with a bug, a sink that raises),
wired into what ``build_sidecar`` made through ``ProxyDeps``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.budget.local import LocalCounters
from sidecar.budget.service import Admission, AdmitRequest, BudgetService
from sidecar.core.events import CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.tools import ToolLatencyMatcher
from sidecar.policy.calls import SidecarPolicies
from sidecar.proxy.upstream import Headers, RequestBody, Upstream, UpstreamAnswer
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.telemetry.recorder import Recorder, RecorderHooks
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY

MODEL = "claude-sonnet-4-5"
MESSAGES: list[Any] = [{"role": "user", "content": "Hi"}]


class Bug(Exception):
    """Stands for a defect in the sidecar (not one of the errors it expects)."""


def _no_prices() -> PriceTable:
    raise Bug("price table unreadable")


def _price_fails(event: CallEvent) -> None:
    raise Bug("pricing failed")


class FailingBudgets(BudgetService):
    async def admit(self, req: AdmitRequest) -> Admission:
        raise Bug("budget backend bug")


class _BreakingAnswer:
    """The real answer, whose body breaks with a bug after its first chunk."""

    def __init__(self, answer: UpstreamAnswer) -> None:
        self._answer = answer

    @property
    def status(self) -> int:
        return self._answer.status

    @property
    def raw_headers(self) -> Headers:
        return self._answer.raw_headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._answer.iter_chunks():
            yield chunk
            raise Bug("relay bug")

    def close(self) -> None:
        self._answer.close()


class BreakingUpstream:
    def __init__(self, inner: Upstream) -> None:
        self._inner = inner

    async def send(self, method: str, target: str, headers: Headers, body: RequestBody) -> UpstreamAnswer:
        return _BreakingAnswer(await self._inner.send(method, target, headers, body))

    async def close(self) -> None:
        await self._inner.close()


class FailingSink:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def write(self, events: Sequence[CallEvent]) -> None:
        self.calls += 1
        raise Bug("sink bug")

    def close(self) -> None:
        return None


Change = Callable[[RunningSidecar], dict[str, Any]]


@pytest.fixture
def start(tmp_path: Path, fake: FakeUpstream) -> Iterator[Callable[..., RunningSidecar]]:
    running: list[RunningSidecar] = []

    def make(change: Change | None = None, **kwargs: Any) -> RunningSidecar:
        settings = Settings(upstream_url=fake.url, store=f"sqlite:///{tmp_path}/events.db", port=0)
        sidecar = RunningSidecar(settings, **kwargs)
        proxy = sidecar.sidecar.proxy
        if change is not None:
            proxy.deps = replace(proxy.deps, **change(sidecar))
        running.append(sidecar.start())
        return sidecar

    yield make
    for sidecar in running:
        sidecar.stop()


def _policies(sidecar: RunningSidecar, *, budgets: BudgetService | None = None, prices: Any = None) -> Any:
    """The app's own policies, rebuilt around one failing part."""
    app = sidecar.sidecar
    real = app.proxy.deps.policies
    assert isinstance(real, SidecarPolicies) and app.budgets is not None
    return SidecarPolicies(
        ToolLatencyMatcher(),
        budgets or app.budgets,
        app.prices.price,
        real.cache,
        prices or (lambda: app.prices.table),
        app.metrics,
    )


def _failing_planner(sidecar: RunningSidecar) -> dict[str, Any]:
    return {"policies": _policies(sidecar, prices=_no_prices)}


def _failing_admit(sidecar: RunningSidecar) -> dict[str, Any]:
    app = sidecar.sidecar
    assert app.budgets is not None
    budgets = FailingBudgets(app.budgets.config, LocalCounters(), app.prices.table)
    return {"policies": _policies(sidecar, budgets=budgets)}


def _internal_errors(sidecar: RunningSidecar, component: str) -> float:
    registry = sidecar.sidecar.registry
    value = registry.get_sample_value("sidecar_internal_errors_total", {"component": component})
    assert value is not None  # the series exists from the start
    return value


def _client(sidecar: RunningSidecar) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)


@pytest.mark.parametrize("change", [_failing_planner, _failing_admit], ids=["planner", "budget-admit"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_bug_before_forwarding_is_a_500_api_error_recorded_once(
    start: Callable[..., RunningSidecar], fake: FakeUpstream, change: Change, stream: bool
) -> None:
    sidecar = start(change)
    assert _internal_errors(sidecar, "proxy") == 0
    session = f"crash-{stream}"
    with pytest.raises(anthropic.APIStatusError) as info:
        _client(sidecar).messages.create(
            model=MODEL,
            max_tokens=8,
            messages=MESSAGES,
            stream=stream,
            extra_headers={"x-session-id": session},
        )
    assert info.value.status_code == 500
    body = info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert info.value.response.headers["request-id"].startswith("req_sidecar_")
    assert fake.requests == []  # never forwarded
    (event,) = sidecar.wait_events(1, session_id=session)
    assert (event.status, event.outcome, event.error_type) == (500, "sidecar_error", "api_error")
    assert _internal_errors(sidecar, "proxy") == 1
    # The next call fails the same way: nothing was left half-done (the budget reservation included).
    with pytest.raises(anthropic.InternalServerError):
        _client(sidecar).messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert len(sidecar.wait_events(2)) == 2


def test_a_bug_after_the_headers_cuts_the_stream(start: Callable[..., RunningSidecar]) -> None:
    sidecar = start(lambda s: {"upstream": BreakingUpstream(s.sidecar.proxy.deps.upstream)})
    with (
        pytest.raises(Exception) as info,  # the SDK's HTTP library names the error
        _client(sidecar).messages.stream(
            model=MODEL, max_tokens=8, messages=MESSAGES, extra_headers={"x-session-id": "cut"}
        ) as stream,
    ):
        stream.get_final_message()
    # The connection ends before the stream does, as when the upstream resets it.
    assert type(info.value).__name__ == "RemoteProtocolError", info.value
    (event,) = sidecar.wait_events(1, session_id="cut")
    assert (event.status, event.outcome, event.error_type) == (200, "sidecar_error", "stream_interrupted")
    assert event.usage.input_tokens > 0  # what was parsed before the cut is kept
    assert _internal_errors(sidecar, "proxy") == 1


def test_a_pricing_failure_does_not_fail_the_call_and_it_is_still_recorded(
    start: Callable[..., RunningSidecar],
) -> None:
    sidecar = start(lambda s: {"price": _price_fails})
    message = _client(sidecar).messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, extra_headers={"x-session-id": "unpriced"}
    )
    assert message.content
    (event,) = sidecar.wait_events(1, session_id="unpriced")
    assert (event.status, event.outcome, event.cost_usd) == (200, "ok", None)
    assert _internal_errors(sidecar, "accounting") == 1
    assert _internal_errors(sidecar, "proxy") == 0


def test_a_failing_sink_does_not_fail_the_call(start: Callable[..., RunningSidecar]) -> None:
    broken = FailingSink()

    def record_to_a_broken_sink_too(sidecar: RunningSidecar) -> dict[str, Any]:
        app = sidecar.sidecar
        assert app.stores is not None
        hooks = RecorderHooks(on_sink_result=app.metrics.on_sink_result)
        app.recorder = Recorder([broken, *app.stores.sinks], hooks=hooks)
        return {"submit": app.recorder.submit}

    sidecar = start(record_to_a_broken_sink_too)
    for stream in (False, True):
        got = _client(sidecar).messages.create(
            model=MODEL, max_tokens=8, messages=MESSAGES, stream=stream, extra_headers={"x-session-id": "s"}
        )
        if stream:
            assert [e.type for e in got][-1] == "message_stop"  # type: ignore[union-attr]
    assert len(sidecar.wait_events(2, session_id="s")) == 2  # the store still got both
    assert broken.calls >= 1
    errors = sidecar.sidecar.registry.get_sample_value("sidecar_sink_errors_total", {"sink": "broken"})
    assert errors is not None and errors >= 1
    assert _internal_errors(sidecar, "proxy") == 0


def _deep_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize("where", ["tools", "system"])
def test_a_deeply_nested_tool_schema_or_system_block_is_forwarded(
    start: Callable[..., RunningSidecar], fake: FakeUpstream, where: str
) -> None:
    sidecar = start()  # SIDECAR_PROMPT_CACHE=auto, the default: the planner estimates the prefix
    deep = _deep_schema(300)  # past orjson's 255 levels
    long_text = "word " * 5000
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 8, "messages": MESSAGES}
    if where == "tools":
        body["tools"] = [{"name": "t", "description": long_text, "input_schema": deep}]
    else:
        body["system"] = [{"type": "text", "text": long_text, "citations": deep}]
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "x-session-id": "deep"}
    resp = httpx.post(sidecar.url + "/v1/messages", headers=headers, content=json.dumps(body))
    assert resp.status_code == 200, resp.text
    assert len(fake.requests) == 1
    (event,) = sidecar.wait_events(1, session_id="deep")
    assert event.outcome == "ok" and not event.cache_breakpoint_injected
