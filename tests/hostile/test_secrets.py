"""Secrets never leave the request (SPEC R-PX-4): distinctive keys through every path, then a search.

Canary keys travel through successes (JSON and streams), upstream 401/429/500 answers, a budget
refusal, a 413, an unreachable upstream, the sidecar's own client-token check, the admin API, and the
``report``/``check`` commands with a ClickHouse password — with debug logging on. Then every output
is searched: log lines (the ``sidecar`` JSON logs and every other logger), ``/metrics``, every SQLite
row and column, every span, every answer's status line, headers and body, the sessions API, and the
stderr of a real ``serve`` process. Only the salted key fingerprint may identify a key.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.cli import main as cli_main
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.telemetry.logs import configure_logging
from sidecar.testing.fake_upstream import FakeUpstream
from tests.hostile.support import ServeProcess, free_port
from tests.waiting import wait_until

MARK = "LEAKCANARY"
BODY = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
FINGERPRINT = re.compile(r"^key_[0-9a-f]{12}$")
TEST_SIDE_LOGGERS = ("httpx", "httpcore", "aiohttp.server", "aiohttp.web", "aiohttp.access")


def canary(prefix: str, label: str) -> str:
    return f"{prefix}{MARK}{label}-{secrets.token_hex(12)}"


class Evidence:
    """Everything the sidecar said or wrote, labelled by where it came from."""

    def __init__(self, canaries: list[str]) -> None:
        self.canaries = canaries
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.items.append((where, text))

    def response(self, where: str, resp: httpx.Response) -> httpx.Response:
        head = "\n".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in resp.headers.raw)
        self.add(where, f"{resp.status_code} {resp.reason_phrase}\n{head}\n\n{resp.text}")
        return resp

    def assert_clean(self) -> None:
        # The mark catches any piece holding it; the random tails catch a leaked suffix.
        needles = [MARK, *(c[-24:] for c in self.canaries)]
        leaks = [(where, n) for where, text in self.items for n in needles if n in text]
        assert not leaks, f"secret material found in: {sorted({w for w, _ in leaks})}"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The ``sidecar`` JSON logs at debug, and every other logger (uvicorn, aiohttp, ...) via the root."""
    sidecar_logger, root = logging.getLogger("sidecar"), logging.getLogger()
    saved = (list(sidecar_logger.handlers), sidecar_logger.level, sidecar_logger.propagate, root.level)
    buf = io.StringIO()
    configure_logging("debug", stream=buf)
    everything = logging.StreamHandler(buf)
    everything.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    # The test's own HTTP client and the fake upstream's server log too; they are not the sidecar.
    everything.addFilter(lambda r: not r.name.startswith(TEST_SIDE_LOGGERS))
    root.addHandler(everything)
    root.setLevel(logging.DEBUG)
    yield buf
    root.removeHandler(everything)
    sidecar_logger.handlers[:] = saved[0]
    sidecar_logger.setLevel(saved[1])
    sidecar_logger.propagate = saved[2]
    root.setLevel(saved[3])


def start(
    tmp_path: Path, name: str, upstream: str, **overrides: Any
) -> tuple[RunningSidecar, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    settings = Settings(
        upstream_url=upstream,
        store=f"sqlite:///{tmp_path}/{name}/events.db",
        port=0,
        log_level="debug",
        **overrides,
    )
    return RunningSidecar(settings, span_exporter=exporter).start(), exporter


def collect(ev: Evidence, sidecar: RunningSidecar, admin: str, calls: int) -> int:
    """Add the sidecar's metrics, sessions API and every stored row; returns the event count."""
    events = sidecar.wait_events(calls)  # calls are recorded just after their last byte
    auth = {"authorization": f"Bearer {admin}"}
    ev.response("metrics", httpx.get(sidecar.url + "/metrics"))
    om = {"accept": "application/openmetrics-text"}
    ev.response("openmetrics", httpx.get(sidecar.url + "/metrics", headers=om))
    listing = ev.response("sessions list", httpx.get(sidecar.url + "/sidecar/v1/sessions", headers=auth))
    for s in listing.json()["sessions"]:
        url = f"{sidecar.url}/sidecar/v1/sessions/{s['session_id']}"
        ev.response("session detail", httpx.get(url, headers=auth))
    db = sidecar.settings.store.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # every column, raw
                ev.add(
                    f"sqlite {table}", repr([v.decode("latin-1") if isinstance(v, bytes) else v for v in row])
                )
    return len(events)


def chat(
    client: httpx.Client,
    ev: Evidence,
    where: str,
    auth: dict[str, str],
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    resp = client.post("/v1/messages", headers={**auth, **(headers or {})}, json={**BODY, **(body or {})})
    return ev.response(where, resp).status_code


def pass_through_calls(client: httpx.Client, ev: Evidence, key_a: str, key_b: str) -> list[int]:
    a = {"x-api-key": key_a, "anthropic-version": "2023-06-01", "x-session-id": "a-ok"}
    b = {"authorization": f"Bearer {key_b}", "anthropic-version": "2026-10-21", "x-session-id": "b-ok"}
    statuses = [chat(client, ev, "json", a), chat(client, ev, "stream", a, body={"stream": True})]
    for status in (401, 429, 500):
        scenario = {"x-fake-scenario": f"error-{status}", "x-session-id": f"a-{status}"}
        statuses.append(chat(client, ev, f"upstream {status}", a, headers=scenario))
    refused = {"x-session-id": "a-budget"}
    statuses += [chat(client, ev, "budget", a, headers=refused) for _ in range(3)]
    too_big = {"messages": [{"role": "user", "content": "x" * 400_000}]}
    statuses.append(chat(client, ev, "413", a, body=too_big, headers={"x-session-id": "a-413"}))
    statuses += [
        chat(client, ev, "bearer json", b),
        chat(client, ev, "bearer stream", b, body={"stream": True}),
    ]
    b_401 = {"x-fake-scenario": "error-401", "x-session-id": "b-401"}
    statuses.append(chat(client, ev, "bearer 401", b, headers=b_401))
    return statuses


def test_canaries_leave_no_trace(fake: FakeUpstream, tmp_path: Path, captured_logs: io.StringIO) -> None:
    key_a, key_b = canary("sk-ant-api03-", "CLIENTKEY"), canary("", "BEARERTOKEN")
    upstream_key, team_token = canary("sk-ant-api03-", "UPSTREAMKEY"), canary("team-", "CLIENTTOKEN")
    wrong_token, admin, wrong_admin = (
        canary("", "WRONGTOKEN"),
        canary("adm-", "ADMIN"),
        canary("", "WRONGADMIN"),
    )
    ev = Evidence([key_a, key_b, upstream_key, team_token, wrong_token, admin, wrong_admin])
    budgets = {"budgets": {"defaults": {"session_max_model_calls": 2, "session_max_usd": 5.0}}}
    plain, plain_spans = start(
        tmp_path, "plain", fake.url, admin_token=admin, policies=budgets, max_body_messages=300_000
    )
    dead, dead_spans = start(tmp_path, "dead", f"http://127.0.0.1:{free_port()}", admin_token=admin)
    held, held_spans = start(
        tmp_path,
        "held",
        fake.url,
        admin_token=admin,
        upstream_api_key=upstream_key,
        client_tokens=(team_token,),
    )
    try:
        with httpx.Client(base_url=plain.url, timeout=10) as client:
            statuses = pass_through_calls(client, ev, key_a, key_b)
        assert statuses == [200, 200, 401, 429, 500, 200, 200, 429, 413, 200, 200, 401]
        with httpx.Client(base_url=dead.url, timeout=10) as client:
            assert chat(client, ev, "502", {"x-api-key": key_a, "anthropic-version": "2023-06-01"}) == 502
        with httpx.Client(base_url=held.url, timeout=10) as client:
            held_statuses = held_key_calls(client, ev, team_token, wrong_token)
        assert held_statuses == [200, 200, 200, 401, 500]
        for sidecar in (plain, held):
            wrong = {"authorization": f"Bearer {wrong_admin}"}
            ev.response("admin 401", httpx.get(sidecar.url + "/sidecar/v1/sessions", headers=wrong))
        counts = [collect(ev, s, admin, n) for s, n in ((plain, 12), (dead, 1), (held, 5))]
        check_fingerprints(plain, held)
    finally:
        for sidecar in (plain, dead, held):
            sidecar.stop()  # shutting down flushes the batched spans
    for exporter in (plain_spans, dead_spans, held_spans):
        spans = exporter.get_finished_spans()
        assert spans, "no spans were exported"
        ev.add("spans", "\n".join(span.to_json() for span in spans))
    # The secrets really went out where they belong (or the search below would prove nothing).
    seen = [(r.header("x-api-key"), r.header("authorization")) for r in fake.requests]
    assert (key_a, None) in seen and (None, f"Bearer {key_b}") in seen and (upstream_key, None) in seen
    assert not any(team_token in str(pair) for pair in seen)  # the client token never leaves the sidecar
    assert counts == [12, 1, 5]  # every call is one event, refusals included
    logs = captured_logs.getvalue()
    assert logs.count('"event_id"') >= sum(counts) and "sidecar ready" in logs
    ev.add("logs", logs)
    ev.assert_clean()


def held_key_calls(client: httpx.Client, ev: Evidence, token: str, wrong: str) -> list[int]:
    base = {"anthropic-version": "2023-06-01", "x-session-id": "held"}
    as_key, as_bearer = {**base, "x-api-key": token}, {**base, "authorization": f"Bearer {token}"}
    statuses = [
        chat(client, ev, "held json", as_key),
        chat(client, ev, "held stream", as_key, body={"stream": True}),
        chat(client, ev, "held bearer", as_bearer),
        chat(client, ev, "held wrong token", {**base, "x-api-key": wrong}),
        chat(client, ev, "held 500", as_bearer, headers={"x-fake-scenario": "error-500"}),
    ]
    return statuses


def check_fingerprints(plain: RunningSidecar, held: RunningSidecar) -> None:
    """One key, one fingerprint (whichever header carried it); different keys, different ones."""
    by_session: dict[str, set[str | None]] = {}
    for e in plain.wait_events(12):
        by_session.setdefault(e.session_id, set()).add(e.key_fingerprint)
    fp_a = by_session["a-ok"] | by_session["a-401"] | by_session["a-budget"]
    fp_b = by_session["b-ok"] | by_session["b-401"]
    assert len(fp_a) == 1 and len(fp_b) == 1 and fp_a != fp_b
    assert all(fp is not None and FINGERPRINT.match(fp) for fp in fp_a | fp_b)
    held_fps = {e.key_fingerprint for e in held.wait_events(5) if e.status != 401}
    assert len(held_fps) == 1 and None not in held_fps  # x-api-key and Bearer forms of the same token


def test_serve_process_stderr_holds_no_secret(tmp_path: Path) -> None:
    client_token, upstream_key = canary("team-", "SERVETOKEN"), canary("sk-ant-api03-", "SERVEUPSTREAM")
    admin, password = canary("adm-", "SERVEADMIN"), canary("pw-", "CLICKHOUSE")
    ev = Evidence([client_token, upstream_key, admin, password])
    with FakeUpstream() as fake:
        env = {
            "SIDECAR_UPSTREAM_URL": fake.url,
            "SIDECAR_LOG_LEVEL": "debug",
            "SIDECAR_UPSTREAM_API_KEY": upstream_key,
            "SIDECAR_CLIENT_TOKENS": f"other-token,{client_token}",
            "SIDECAR_ADMIN_TOKEN": admin,
            # ClickHouse mode with nothing listening: the shipper fails and logs about it.
            "SIDECAR_STORE": f"clickhouse://alice:{password}@127.0.0.1:{free_port()}/db",
            "SIDECAR_LOCAL_STORE": f"sqlite:///{tmp_path}/local.db",
            "SIDECAR_SPOOL_PATH": str(tmp_path / "spool.db"),
        }
        proc = ServeProcess(tmp_path, env).start()
        try:
            serve_calls(proc, ev, client_token, admin)
            wait_until(lambda: "shipping failed" in proc.log_path.read_text(), interval=0.05)
        finally:
            code = proc.stop()
        assert any(r.header("x-api-key") == upstream_key for r in fake.requests)
    assert code == 0
    assert "shipping failed" in proc.stderr and '"event_id"' in proc.stderr  # the paths really ran
    ev.add("serve stderr", proc.stderr)
    for db in tmp_path.glob("*.db"):
        ev.add(f"file {db.name}", db.read_bytes().decode("latin-1"))
    ev.assert_clean()


def serve_calls(proc: ServeProcess, ev: Evidence, token: str, admin: str) -> None:
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        assert chat(client, ev, "serve json", headers) == 200
        assert chat(client, ev, "serve stream", headers, body={"stream": True}) == 200
        assert chat(client, ev, "serve 500", headers, headers={"x-fake-scenario": "error-500"}) == 500
        assert chat(client, ev, "serve wrong token", {**headers, "x-api-key": "nope"}) == 401
        wrong = ev.response(
            "serve admin 401", client.get("/sidecar/v1/sessions", headers={"authorization": "Bearer x"})
        )
        assert wrong.status_code == 401
        ok = client.get("/sidecar/v1/sessions", headers={"authorization": f"Bearer {admin}"})
        assert ev.response("serve sessions", ok).status_code == 200
        ev.response("serve metrics", client.get("/metrics"))


@pytest.mark.parametrize(
    "store",
    [
        "clickhouse://alice:{pw}@127.0.0.1:{port}/db",
        "clickhouses://alice:{pw}@127.0.0.1:{port}/db?verify=0",
        "clickhouse://alice:{pw}@127.0.0.1:{port}/db?secure=maybe",
        "clickhouse://alice:{pw}@[::1/db",
        "postgres://alice:{pw}@127.0.0.1:{port}/db",
    ],
)
def test_report_and_check_never_print_the_store_password(
    store: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    password = canary("", "STOREPASSWORD")
    url = store.format(pw=password, port=free_port())
    caplog.set_level(logging.DEBUG)
    for command in (["report", "--store", url], ["check", "--store", url, "--p95-latency-ms", "5"]):
        assert cli_main(command) == 2
        out, err = capsys.readouterr()
        assert "***" in err and MARK not in out + err + caplog.text, err
        assert len([line for line in err.splitlines() if line.startswith("claude-sidecar")]) == 1
