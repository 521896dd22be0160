"""The project's own fake Google Vertex AI (Anthropic publisher models) and OAuth token endpoint.

Routes: ``POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict`` (a
``Message`` as JSON), ``:streamRawPredict`` (first-party SSE), ``…/models/count-tokens:rawPredict``, and
``POST /token``, the OAuth endpoint of a test service account: :meth:`FakeVertex.write_service_account`
writes a key file whose ``token_uri`` points here, so google-auth's real refresh path runs (a JWT signed
with the file's private key, verified here with its public key) and mints tokens this fake then
requires as ``Authorization: Bearer`` (401 in Google's error shape otherwise). ``token_lifetime_s``
sets how long a token lives, to exercise refreshes.

Bodies are checked as Vertex checks them: an ``anthropic_version``; no ``model`` on the predict routes
(the path names it), a ``model`` on count-tokens. The answer logic and ``x-fake-*`` controls are the
first-party fake's.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sidecar.testing.fake_cache import InvalidRequest, estimate_tokens, prompt_blocks
from sidecar.testing.fake_http import STATE_KEY
from sidecar.testing.fake_messages import _stream, _timing, answer_message, validate_message_params
from sidecar.testing.fake_state import FakeConfig, FakeState, RecordedRequest
from sidecar.testing.fake_upstream import FakeUpstream

VERSIONS = frozenset({"vertex-2023-10-16", "2026-10-21"})
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_PATH = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/anthropic/models/([^/]+):(\w+)$")


class VertexError(Exception):
    _STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def response(self) -> web.Response:
        error = {
            "code": self.status,
            "message": self.message,
            "status": self._STATUS.get(self.status, "INTERNAL"),
        }
        return web.json_response({"error": error}, status=self.status)


class TokenIssuer:
    """The OAuth side: one service account's public key, the tokens it minted and their expiry."""

    def __init__(self, lifetime_s: int) -> None:
        self.lifetime_s = lifetime_s
        self.public_pem = b""
        self.client_email = "sidecar-test@fake-project.iam.gserviceaccount.com"
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.minted = 0

    def mint(self) -> tuple[str, int]:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.time() + self.lifetime_s
            self.minted += 1
        return token, self.lifetime_s

    def valid(self, token: str) -> bool:
        with self._lock:
            expires = self._tokens.get(token)
        return expires is not None and expires > time.time()


TOKENS_KEY = web.AppKey("fake_vertex_tokens", TokenIssuer)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_assertion(assertion: str, public_pem: bytes, audience: list[str], issuer: str) -> str | None:
    """``None`` for an RS256 JWT signed by the service account's key, for ``audience``, unexpired;
    else why not. Verified with ``cryptography`` alone, independently of the client library."""
    try:
        head, payload, signature = assertion.split(".")
        header, claims = json.loads(_b64url(head)), json.loads(_b64url(payload))
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, rsa.RSAPublicKey):
            return "not an RSA key"
        key.verify(_b64url(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return "invalid assertion signature"
    if header.get("alg") != "RS256" or claims.get("iss") != issuer:
        return "unexpected algorithm or issuer"
    if claims.get("aud") not in audience or not claims.get("exp", 0) > time.time() - 60:
        return "wrong audience or expired assertion"
    return None


async def token_endpoint(request: web.Request) -> web.Response:
    issuer: TokenIssuer = request.app[TOKENS_KEY]
    form = await request.post()
    assertion = form.get("assertion")
    if form.get("grant_type") != GRANT or not isinstance(assertion, str) or not issuer.public_pem:
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    # google-auth signs service-account assertions for Google's token endpoint whatever token_uri says.
    audience = [GOOGLE_TOKEN_URI, f"{request.scheme}://{request.host}/token"]
    problem = check_assertion(assertion, issuer.public_pem, audience, issuer.client_email)
    if problem is not None:
        return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
    token, lifetime = issuer.mint()
    return web.json_response({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})


def _check_token(request: web.Request) -> None:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not request.app[TOKENS_KEY].valid(auth[7:]):
        raise VertexError(
            401, "Request had invalid authentication credentials. Expected OAuth 2 access token."
        )


def _model_body(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    if body.get("anthropic_version") not in VERSIONS:
        raise VertexError(400, "anthropic_version: Field required (vertex-2023-10-16)")
    if model is not None and "model" in body:
        raise VertexError(400, "model: Extra inputs are not permitted")
    full = {k: v for k, v in body.items() if k != "anthropic_version"}
    if model is not None:
        full["model"] = model.split("@", 1)[0] + ("-" + model.split("@", 1)[1] if "@" in model else "")
    return full


async def predict(request: web.Request) -> web.StreamResponse:
    state: FakeState = request.app[STATE_KEY]
    raw = await request.read()
    url = request.rel_url
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    state.record(
        RecordedRequest(request.method, url.raw_path, url.raw_query_string, headers, raw, time.monotonic())
    )
    try:
        found = _PATH.match(url.raw_path)
        if found is None or found[4] not in ("rawPredict", "streamRawPredict"):
            raise VertexError(404, f"Not found: {url.raw_path[:200]}")
        _check_token(request)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise VertexError(400, "Invalid JSON payload received.")
        model = unquote(found[3])
        if model == "count-tokens":
            full = _model_body(body, None)
            return web.json_response({"input_tokens": estimate_tokens(prompt_blocks(full))})
        full = _model_body(body, model)
        validate_message_params(full, None)
        message, events = answer_message(state, full, request.headers)
        message["id"] = message["id"].replace("msg_01", "msg_vrtx_01", 1)
        events[0]["message"]["id"] = message["id"]
        if found[4] == "streamRawPredict" or body.get("stream") is True:
            return await _stream(
                request, events, _timing(request, state), request.headers.get("x-fake-scenario", "")
            )
        return web.json_response(message)
    except InvalidRequest as exc:
        return VertexError(400, str(exc)).response()
    except VertexError as exc:
        return exc.response()


def build_vertex_app(config: FakeConfig | None = None, token_lifetime_s: int = 3600) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = FakeState(config or FakeConfig())
    app[TOKENS_KEY] = TokenIssuer(token_lifetime_s)
    app.router.add_post("/token", token_endpoint)
    app.router.add_route("*", "/v1/{tail:.*}", predict)
    return app


class FakeVertex(FakeUpstream):
    """The fake Vertex AI and its token endpoint on 127.0.0.1, in a background thread."""

    def __init__(self, config: FakeConfig | None = None, token_lifetime_s: int = 3600, port: int = 0) -> None:
        config = config or FakeConfig()
        super().__init__(config, "127.0.0.1", port, app=build_vertex_app(config, token_lifetime_s))
        self.tokens: TokenIssuer = self.app[TOKENS_KEY]

    def write_service_account(self, path: Path) -> Path:
        """A fresh service-account key file whose ``token_uri`` is this fake (call once started)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.tokens.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        info = {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": secrets.token_hex(20),
            "private_key": private.decode(),
            "client_email": self.tokens.client_email,
            "client_id": "100000000000000000001",
            "token_uri": f"{self.url}/token",
        }
        path.write_text(json.dumps(info), encoding="utf-8")
        path.chmod(0o600)
        return path


__all__ = ["FakeVertex", "TokenIssuer", "build_vertex_app"]
