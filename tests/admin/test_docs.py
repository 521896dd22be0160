"""Interactive docs at ``/sidecar/v1/docs``: everything comes from the sidecar, and the token guards it."""

from __future__ import annotations

import re
import shutil
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from sidecar.app import build_sidecar
from sidecar.cli import check_admin_exposure
from sidecar.errors import ConfigError
from sidecar.server.inprocess import RunningSidecar
from sidecar.server.router import proxy_app
from sidecar.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "sidecar" / "admin" / "static"
TOKEN = "adm-docs-5e1f0c2b9d"
DOCS_PATHS = ("/sidecar/v1/docs", "/sidecar/v1/openapi.json", "/sidecar/v1/docs/assets/swagger-ui-bundle.js")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def _on_host(ref: str, base: str) -> bool:
    target = urlsplit(urljoin(base, ref))
    return (target.scheme, target.netloc) == tuple(urlsplit(base)[:2])


def test_docs_page_and_every_asset_it_references_come_from_the_sidecar(sidecar: RunningSidecar) -> None:
    page_url = sidecar.url + "/sidecar/v1/docs"
    page = httpx.get(page_url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    parser = _Refs()
    parser.feed(page.text)
    spec = re.findall(r"url: '([^']+)'", page.text)
    refs = parser.refs + spec
    assert len(parser.refs) == 3 and spec == ["/sidecar/v1/openapi.json"], refs
    assert '"validatorUrl": null' in page.text  # the validator badge would call swagger.io
    for ref in refs:
        assert _on_host(ref, page_url), ref
        asset = httpx.get(urljoin(page_url, ref))
        assert asset.status_code == 200 and len(asset.content) > 500, ref
    css = httpx.get(sidecar.url + "/sidecar/v1/docs/assets/swagger-ui.css").text
    assert all(u.startswith(("data:", '"data:')) for u in re.findall(r"url\(([^)]*)\)", css))
    assert "@import" not in css and "sourceMappingURL" not in css


def test_docs_in_a_browser_request_nothing_off_host(sidecar: RunningSidecar) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    requested: list[str] = []
    errors: list[str] = []
    doc = httpx.get(sidecar.url + "/sidecar/v1/openapi.json").json()
    operations = sum(len(ops) for ops in doc["paths"].values())
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def route(r: object) -> None:  # record, and never let a request leave the host
                req = r.request  # type: ignore[attr-defined]
                requested.append(req.url)
                if _on_host(req.url, sidecar.url):
                    r.continue_()  # type: ignore[attr-defined]
                else:
                    r.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.goto(sidecar.url + "/sidecar/v1/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            shown = page.locator(".opblock").count()
            title = page.locator(".info .title").inner_text()
        finally:
            browser.close()
    assert not errors, errors
    assert [u for u in requested if not _on_host(u, sidecar.url)] == []
    assert sidecar.url + "/sidecar/v1/openapi.json" in requested
    assert shown == operations and "claude-sidecar admin API" in title


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
async def test_the_admin_token_guards_the_docs_whatever_the_bind_address(tmp_path: Path, host: str) -> None:
    """R-PX-9: the docs live under /sidecar/v1/, so with a token they need it, on loopback and beyond."""
    settings = Settings(store=f"sqlite:///{tmp_path}/e.db", port=0, host=host, admin_token=TOKEN)
    sidecar = build_sidecar(settings)
    check_admin_exposure(sidecar.settings)  # with a token, serve would start on this address
    transport = httpx.ASGITransport(app=proxy_app(sidecar))
    async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
        for path in DOCS_PATHS:
            for headers in ({}, {"authorization": "Bearer adm-wrong"}, {"authorization": TOKEN}):
                resp = await client.get(path, headers=headers)
                assert resp.status_code == 401, (path, headers)
                assert resp.json()["error"]["type"] == "authentication_error"
                assert TOKEN not in resp.text
            assert (await client.get(path, headers={"authorization": f"Bearer {TOKEN}"})).status_code == 200


async def test_without_a_token_the_docs_are_open_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SIDECAR_ADMIN_TOKEN"):
        check_admin_exposure(Settings(host="0.0.0.0"))  # serve refuses: no open docs beyond loopback
    sidecar = build_sidecar(Settings(store=f"sqlite:///{tmp_path}/e.db", port=0))
    check_admin_exposure(sidecar.settings)
    transport = httpx.ASGITransport(app=proxy_app(sidecar))
    async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
        for path in DOCS_PATHS:
            assert (await client.get(path)).status_code == 200, path


def test_the_assets_are_package_data() -> None:
    """``pip install .`` (the image) must ship every file the docs page loads."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["sidecar"]
    files = [p.relative_to(ROOT / "sidecar").as_posix() for p in STATIC.iterdir()]
    needed = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"}
    assert {f"admin/static/{name}" for name in needed} <= set(files)
    assert all(any(fnmatch(f, g) for g in globs) for f in files), (files, globs)
