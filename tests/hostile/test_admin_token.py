"""Admin access (SPEC R-PX-9): no admin API beyond loopback without a token, and the token is enforced."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from sidecar.cli import check_admin_exposure
from sidecar.errors import ConfigError
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream
from tests.hostile.support import body_of, free_port, raw_request, status_of

TOKEN = "adm-7f3c9a1e5b2d4c6e8a0f"
ADMIN_CALLS = [
    ("GET", "/sidecar/v1/sessions"),
    ("GET", "/sidecar/v1/sessions/some-session"),
    ("GET", "/sidecar/v1/fleet"),
    ("DELETE", "/sidecar/v1/fleet/voice/members/m1"),
    ("GET", "/sidecar/v1/alerts"),
    ("POST", "/sidecar/v1/alerts/nightly/snooze?for=1h"),
    ("POST", "/sidecar/v1/maintenance?for=1h"),
    ("DELETE", "/sidecar/v1/checks/nightly"),
    ("POST", "/sidecar/v1/sessions/s1/block"),
    ("POST", "/sidecar/v1/apps/billing/unblock"),
    ("GET", "/sidecar/v1/apps/billing/budget"),
    ("PUT", "/sidecar/v1/apps/billing/budget"),
    ("GET", "/sidecar/v1"),
    ("GET", "/sidecar/v1/no-such-endpoint"),
]
WRONG = {
    "none": {},
    "wrong token": {"authorization": "Bearer adm-wrong"},
    "token plus a byte": {"authorization": f"Bearer {TOKEN}x"},
    "token prefix": {"authorization": f"Bearer {TOKEN[:-1]}"},
    "no scheme": {"authorization": TOKEN},
    "other scheme": {"authorization": f"Token {TOKEN}"},
    "basic auth": {"authorization": "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()},
    "as x-api-key": {"x-api-key": TOKEN},
    "bare scheme": {"authorization": "Bearer"},
}


def assert_401(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    doc = resp.json()
    assert doc["type"] == "error" and doc["error"]["type"] == "authentication_error"
    assert doc["request_id"] == resp.headers["request-id"]
    assert TOKEN not in resp.text


def test_admin_api_rejects_missing_and_wrong_tokens(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, admin_token=TOKEN)
    with httpx.Client(base_url=sidecar.url) as client:
        for method, path in ADMIN_CALLS:
            for name, headers in WRONG.items():
                resp = client.request(method, path, headers=headers)
                assert resp.status_code == 401, f"{method} {path} with {name}: {resp.status_code}"
                assert_401(resp)
            assert_401(client.request(method, path + ("&" if "?" in path else "?") + f"token={TOKEN}"))
            for good in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER   {TOKEN}"):
                resp = client.request(method, path, headers={"authorization": good})
                assert resp.status_code != 401, f"{method} {path} refused a valid token"
        sessions = client.get("/sidecar/v1/sessions", headers={"authorization": f"Bearer {TOKEN}"})
        assert sessions.status_code == 200 and sessions.json() == {"sessions": [], "next_cursor": None}
        for path in ("/metrics", "/healthz", "/readyz"):
            assert client.get(path).status_code == 200
            assert client.get(path, headers={"authorization": "Bearer adm-wrong"}).status_code == 200
        # Check-ins are not admin calls: open without an ingest token.
        assert client.post("/sidecar/v1/checkins/nightly").status_code == 200


def test_path_tricks_do_not_bypass_the_token(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, admin_token=TOKEN)
    for target in (
        b"/sidecar/v1/checkins/../sessions",
        b"/sidecar/v1/checkins/x/../../sessions",
        b"/sidecar/v1/checkins%2F..%2Fsessions",
        b"/sidecar/v1/checkins/%2e%2e/sessions",
        b"/sidecar/v1//sessions",
        b"/sidecar/v1/sessions/",
        b"/%73idecar/v1/sessions",
        b"/SIDECAR/v1/sessions",
        b"/v1/../sidecar/v1/sessions",
        b"/sidecar/v1/./sessions",
    ):
        response = raw_request(
            sidecar.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n"
        )
        status = status_of(response)
        assert status in (401, 404, 405, 307), f"{target!r}: {response[:300]!r}"
        assert b'"sessions"' not in body_of(response), target
    # The one path that went upstream was answered by the fake, not by the admin API.
    assert [r.path for r in fake.requests] == ["/v1/../sidecar/v1/sessions"]


def test_ingest_token_guards_check_ins_separately(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, admin_token=TOKEN, ingest_token="ing-1234")
    url = sidecar.url + "/sidecar/v1/checkins/nightly"
    assert_401(httpx.post(url))
    assert_401(httpx.post(url, headers={"authorization": f"Bearer {TOKEN}"}))  # the admin token is not it
    assert httpx.post(url, headers={"authorization": "Bearer ing-1234"}).status_code == 200
    assert httpx.post(url + "?token=ing-1234").status_code == 200


def test_admin_port_moves_the_admin_api_off_the_proxy(fake: FakeUpstream, tmp_path: Path) -> None:
    settings = Settings(
        upstream_url=fake.url, store=f"sqlite:///{tmp_path}/e.db", port=0, admin_port=0, admin_token=TOKEN
    )
    with RunningSidecar(settings) as sidecar:
        assert sidecar.admin_port is not None and sidecar.admin_url != sidecar.url
        auth = {"authorization": f"Bearer {TOKEN}"}
        for path in ("/sidecar/v1/sessions", "/metrics", "/healthz", "/readyz"):
            resp = httpx.get(sidecar.url + path, headers=auth)
            assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error", path
        assert_401(httpx.get(sidecar.admin_url + "/sidecar/v1/sessions"))
        assert httpx.get(sidecar.admin_url + "/sidecar/v1/sessions", headers=auth).status_code == 200
        assert httpx.get(sidecar.admin_url + "/metrics").status_code == 200
        assert httpx.get(sidecar.admin_url + "/v1/models", headers=auth).status_code == 404  # no proxy here
        ok = httpx.get(
            sidecar.url + "/v1/models", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}
        )
        assert ok.status_code == 200


def test_serve_refuses_to_expose_the_admin_api_without_a_token(tmp_path: Path) -> None:
    """Each variant fails at start-up (exit 2, one line) without binding anything."""
    variants = {
        "env host": ({"SIDECAR_HOST": "0.0.0.0"}, []),
        "ipv6 any": ({"SIDECAR_HOST": "::"}, []),
        "flag host": ({}, ["--host", "0.0.0.0"]),
        "admin listener": ({"SIDECAR_ADMIN_PORT": str(free_port()), "SIDECAR_ADMIN_HOST": "0.0.0.0"}, []),
    }
    base = {k: v for k, v in os.environ.items() if k != "SIDECAR_ADMIN_TOKEN"}
    base |= {"SIDECAR_UPSTREAM_URL": "http://127.0.0.1:1", "SIDECAR_PORT": str(free_port())}
    base |= {"SIDECAR_STORE": f"sqlite:///{tmp_path}/e.db", "SIDECAR_FLEET_PORT": "0"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "serve", *flags],
            env={**base, **env},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (env, flags) in variants.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=30)
        lines = [line for line in (out + err).splitlines() if line.strip()]
        assert proc.returncode == 2, f"{name}: {out + err}"
        assert len(lines) == 1 and "SIDECAR_ADMIN_TOKEN" in lines[0], f"{name}: {lines}"


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ({"host": "0.0.0.0"}, True),
        ({"host": "10.1.2.3"}, True),
        ({"host": "0.0.0.0", "admin_token": TOKEN}, False),
        ({"host": "0.0.0.0", "admin_port": 9999}, False),  # the admin API stays on 127.0.0.1
        ({"admin_port": 9999, "admin_host": "0.0.0.0"}, True),
        ({"host": "localhost"}, False),
        ({"host": "::1"}, False),
    ],
)
def test_exposure_rule(overrides: dict[str, object], refused: bool) -> None:
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if refused:
        with pytest.raises(ConfigError, match="SIDECAR_ADMIN_TOKEN"):
            check_admin_exposure(settings)
    else:
        check_admin_exposure(settings)
