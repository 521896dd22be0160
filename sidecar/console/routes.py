"""Serves the web console (SPEC R-UI-1..2): one HTML shell for every page, and its static assets.

Every page (``/ui/``, ``/ui/sessions``, ``/ui/sessions/{id}``, ``/ui/budgets``, ``/ui/fleet``,
``/ui/alerts``) answers the same shell; the browser script routes by path and reads the documented admin
API (``/sidecar/v1/*``) with the admin token when one is set. The shell and assets carry no data, so they
need no token. Nothing here runs until a page is requested: the files are read and compressed on first
use and kept in memory (a few tens of KB), and there are no background tasks.

The Content-Security-Policy lets a page load and fetch only from its own origin, so a page cannot reach
the network even by mistake.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from sidecar.proxy.asgi import Receive, Scope, Send, send_bytes

PREFIX = "/ui"
_PAGE = re.compile(r"/ui/(?:(?:sessions|budgets|fleet|alerts)/?|sessions/.+)?")
_ASSET = re.compile(r"/ui/static/([A-Za-z0-9_-]+\.(js|css|svg|png|txt))")
_TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
    "png": b"image/png",
    "txt": b"text/plain; charset=utf-8",
}
_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_COMMON = [
    (b"content-security-policy", _CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_GZIP_FROM = 1024  # bytes; smaller files go as they are


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: bytes
    etag: bytes

    @classmethod
    def of(cls, body: bytes, kind: str) -> Asset:
        gz = gzip.compress(body, 9, mtime=0) if len(body) >= _GZIP_FROM and kind != "png" else None
        etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
        return cls(body, gz, _TYPES[kind], etag)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


class Console:
    """Pure-ASGI app for ``/ui`` and ``/ui/*``, plus the browser's ``GET /`` (redirected to ``/ui/``)."""

    def __init__(self) -> None:
        self._assets: dict[str, Asset | None] = {}

    @staticmethod
    def handles(scope: Scope) -> bool:
        """Whether this request is the console's: ``/ui``, ``/ui/*``, or ``GET /`` from a browser (an
        ``Accept`` naming ``text/html``; other ``GET /`` keep the sidecar's 404)."""
        path: str = scope["path"]
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return True
        return path == "/" and scope["method"] == "GET" and b"text/html" in _header(scope, b"accept").lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await self._plain(send, 405, b"Method not allowed.", [(b"allow", b"GET, HEAD")])
        elif path in ("/", PREFIX):
            await self._plain(send, 302, b"", [(b"location", b"/ui/")])
        elif _PAGE.fullmatch(path):
            await self._asset(scope, send, await self._load("index.html"))
        elif (m := _ASSET.fullmatch(path)) is not None:
            await self._asset(scope, send, await self._load(m.group(1)))
        else:
            await self._plain(send, 404, b"Not found. The console starts at /ui/")

    async def _load(self, name: str) -> Asset | None:
        if name not in self._assets:
            # Read once, off the event loop; a missing file is remembered as missing.
            self._assets[name] = await asyncio.to_thread(_read, name)
        return self._assets[name]

    async def _asset(self, scope: Scope, send: Send, asset: Asset | None) -> None:
        if asset is None:
            await self._plain(send, 404, b"Not found.")
            return
        headers = [
            *_COMMON,
            (b"content-type", asset.content_type),
            (b"cache-control", b"no-cache"),  # revalidated by ETag: a new release shows at once
            (b"etag", asset.etag),
            (b"vary", b"accept-encoding"),
        ]
        if asset.etag in _header(scope, b"if-none-match"):
            await send_bytes(send, 304, headers, b"")
            return
        body = asset.body
        if asset.gzipped is not None and b"gzip" in _header(scope, b"accept-encoding"):
            body = asset.gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send_bytes(send, 200, headers, b"" if scope["method"] == "HEAD" else body)

    @staticmethod
    async def _plain(
        send: Send, status: int, text: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [*_COMMON, (b"content-type", _TYPES["txt"]), (b"content-length", str(len(text)).encode())]
        await send_bytes(send, status, headers + (extra or []), text)


def _read(name: str) -> Asset | None:
    try:
        body = resources.files("sidecar.console").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    return Asset.of(body, name.rsplit(".", 1)[1])
