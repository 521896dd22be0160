"""The console's HTTP surface (SPEC R-UI-1): where it is served, what the browser gets, what stays 404."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream

PAGES = [
    "/ui/",
    "/ui/sessions",
    "/ui/sessions/",
    "/ui/sessions/abc",
    "/ui/sessions/a%2Fb",
    "/ui/budgets",
    "/ui/fleet",
    "/ui/alerts",
]
STATIC = Path(__file__).resolve().parents[2] / "sidecar" / "console" / "static"
HTML = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_the_shell(sidecar: RunningSidecar, path: str) -> None:
    r = httpx.get(sidecar.url + path)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/ui/static/main.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_a_browser_at_the_root_is_sent_to_the_console(sidecar: RunningSidecar) -> None:
    r = httpx.get(sidecar.url + "/", headers=HTML)
    assert (r.status_code, r.headers["location"]) == (302, "/ui/")
    assert httpx.get(sidecar.url + "/ui").headers["location"] == "/ui/"
    # Anything else at / keeps the sidecar's 404 in Anthropic's shape (old Claude Code sends HEAD /).
    for method, headers in (("GET", {"accept": "*/*"}), ("GET", {}), ("HEAD", HTML), ("POST", HTML)):
        r = httpx.request(method, sidecar.url + "/", headers=headers)
        assert r.status_code == 404, (method, headers)
        if method != "HEAD":
            assert r.json()["error"]["type"] == "not_found_error"


def test_assets_are_served_cached_and_compressed(sidecar: RunningSidecar) -> None:
    r = httpx.get(sidecar.url + "/ui/static/main.js", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["content-encoding"] == "gzip" and r.text == (STATIC / "main.js").read_text()
    assert int(r.headers["content-length"]) < len(r.content)  # the gzipped size went over the wire
    etag = r.headers["etag"]
    again = httpx.get(sidecar.url + "/ui/static/main.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    head = httpx.head(sidecar.url + "/ui/static/console.css", headers={"accept-encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str((STATIC / "console.css").stat().st_size)
    assert httpx.get(sidecar.url + "/ui/static/favicon.svg").headers["content-type"] == "image/svg+xml"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/static/nope.js", 404),
        ("/ui/static/../routes.py", 404),
        ("/ui/static/%2e%2e/routes.py", 404),
        ("/ui/static/index.py", 404),
        ("/ui/settings", 404),
        ("/ui/sessionsx", 404),
    ],
)
def test_nothing_else_is_served(sidecar: RunningSidecar, path: str, status: int) -> None:
    r = httpx.get(sidecar.url + path)
    assert r.status_code == status and "def " not in r.text


def test_only_get_and_head(sidecar: RunningSidecar) -> None:
    r = httpx.post(sidecar.url + "/ui/sessions")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_every_module_the_pages_import_is_shipped() -> None:
    """The shell's script and every relative import resolve to a file in the package (no build step)."""
    shell = (STATIC / "index.html").read_text()
    wanted = set(re.findall(r"/ui/static/([\w.-]+)", shell))
    for js in STATIC.glob("*.js"):
        wanted |= set(re.findall(r'from "\./([\w.-]+)"', js.read_text()))
    missing = sorted(name for name in wanted if not (STATIC / name).is_file())
    assert missing == []
    # Nothing refers to another host: every URL in the assets is a path on this sidecar (SVG's namespace
    # name is an identifier, never fetched).
    for asset in STATIC.iterdir():
        text = asset.read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"\b(https?|wss?):|[\"'(=]//\w", text), asset.name


def test_the_package_ships_the_assets() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"console/static/*"' in text


def test_on_the_admin_listener_when_it_has_its_own_port(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, admin_port=0)
    assert sidecar.admin_port is not None
    assert httpx.get(sidecar.admin_url + "/ui/sessions").status_code == 200
    assert httpx.get(sidecar.admin_url + "/", headers=HTML).headers["location"] == "/ui/"
    # The proxy listener serves neither the console nor the redirect.
    assert httpx.get(sidecar.url + "/ui/").status_code == 404
    assert httpx.get(sidecar.url + "/", headers=HTML).status_code == 404


def test_the_shell_needs_no_token_but_the_data_does(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, admin_token="s3cret")
    assert httpx.get(sidecar.url + "/ui/sessions").status_code == 200
    assert httpx.get(sidecar.url + "/ui/static/api.js").status_code == 200
    assert httpx.get(sidecar.url + "/sidecar/v1/sessions").status_code == 401


async def _awaited_files() -> list[str]:
    """The source file of every coroutine each task on this loop is awaiting, down its await chain."""
    files: list[str] = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        while coro is not None and hasattr(coro, "cr_code"):
            files.append(coro.cr_code.co_filename)
            coro = coro.cr_await
    return files


def test_the_console_costs_nothing_while_no_page_is_open(sidecar: RunningSidecar) -> None:
    """No task or thread of the console's while no page is open, before or after pages were served: it
    answers requests and keeps nothing running (the pages poll the API only while one is open)."""
    console, package = str(STATIC.parent), str(STATIC.parents[1])
    loop = sidecar._loop
    assert loop is not None

    def console_work() -> list[str]:
        files = asyncio.run_coroutine_threadsafe(_awaited_files(), loop).result(10)
        assert any(f.startswith(package) for f in files)  # the sidecar's own tasks are seen
        threads = [t.name for t in threading.enumerate() if "console" in t.name.lower()]
        return [f for f in files if f.startswith(console)] + threads

    assert console_work() == []
    for path in ("/ui/", "/ui/sessions", "/ui/static/main.js", "/ui/static/console.css"):
        assert httpx.get(sidecar.url + path).status_code == 200
    assert console_work() == []
