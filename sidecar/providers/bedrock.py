"""Amazon Bedrock (SPEC R-CP-1, R-CP-5): how a call on ``/bedrock/…`` is addressed, authenticated and
its answer read.

Routes, after the ``/bedrock`` prefix, as the Bedrock runtime API names them::

    POST /model/{modelId}/invoke                        chat, JSON answer
    POST /model/{modelId}/invoke-with-response-stream   chat, event-stream answer
    POST /model/{modelId}/count-tokens                  count_tokens
    GET  /inference-profiles[/{id}]                     answered from the configured list, else 404

The model id comes raw (``…-v1:0``; anthropic's SDK) or percent-encoded (``…-v1%3A0``, ARNs with
``%2F``; boto3): it is decoded for routing and sent upstream encoded as botocore encodes a path label,
and that exact path is what SigV4 signs. The client's own ``Authorization`` and ``X-Amz-*`` headers (a
signature for the sidecar's host) are never forwarded: the call is signed again for the upstream, after
any change to the body, or carries ``Authorization: Bearer`` with the configured Bedrock API key.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

import orjson

from sidecar.core.cloud import BEDROCK, INFERENCE_PROFILES, CloudRoute
from sidecar.errors import InvalidRequest, NotFound, SidecarError, bedrock_error_parts
from sidecar.providers.aws_auth import SigV4Signer
from sidecar.sansio import headers as hdr
from sidecar.sansio.bedrock_stream import BedrockStreamParser
from sidecar.sansio.messages import MessageSummary
from sidecar.sansio.request import CHAT, COUNT_TOKENS

Headers = Sequence[tuple[bytes, bytes]]
PREFIX = "/bedrock"
EVENT_STREAM = b"application/vnd.amazon.eventstream"
_OPS = {
    "invoke": (CHAT, False),
    "invoke-with-response-stream": (CHAT, True),
    "count-tokens": (COUNT_TOKENS, False),
}
_SAFE = "-._~"  # botocore's percent_encode: everything else in a path label is encoded
_MAX_MODEL = 512  # ARNs of application inference profiles are the longest ids
_MODEL_CHARS = re.compile(r"^[A-Za-z0-9.:/_@-]+$")
_GEOGRAPHY = re.compile(r"^[a-z]{2,6}(?:-[a-z]{2,5})?$")  # us, eu, jp, apac, global, us-gov
_CLIENT_AUTH = (b"authorization", b"x-api-key")
_MAX_ERROR_TYPE = 64


def _model_id(segment: str) -> str:
    try:
        model = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("The model identifier is not valid UTF-8.") from None
    if not model or model in (".", "..") or len(model) > _MAX_MODEL or not _MODEL_CHARS.match(model):
        raise InvalidRequest(f"The provided model identifier is invalid: {model[:200]!r}")
    return model


def cloud_region(model: str, region: str | None) -> tuple[str | None, bool]:
    """``(location, opaque)`` of a model id: a profile's geography (``us.anthropic.…`` → ``us``,
    ``global.…`` → ``global``), else the region serving it (an ARN's, or ``region`` for an in-region
    id). ``opaque``: an application inference profile, whose id does not say the model."""
    ident = model
    if model.startswith("arn:"):
        parts = model.split(":", 5)
        if len(parts) != 6:
            return region, True
        kind, _, ident = parts[5].partition("/")
        if kind != "inference-profile":
            return parts[3] or region, kind != "foundation-model"
    head, dot, rest = ident.partition(".")
    if dot and rest.startswith("anthropic.") and _GEOGRAPHY.match(head):
        return head, False
    return region, False


def parse_route(method: str, raw_path: str, query: str, origin: str, region: str | None) -> CloudRoute:
    """The route of a ``/bedrock/…`` request; ``NotFound`` / ``InvalidRequest`` in Bedrock's terms."""
    parts = raw_path[len(PREFIX) :].split("/")
    if method == "GET" and len(parts) in (2, 3) and parts[1] == "inference-profiles":
        profile = _model_id(parts[2]) if len(parts) == 3 else None
        return CloudRoute(BEDROCK, INFERENCE_PROFILES, profile, False, region, origin, "")
    if method != "POST" or len(parts) != 4 or parts[0] or parts[1] != "model" or parts[3] not in _OPS:
        raise NotFound(f"Unknown Bedrock operation: {method} {raw_path[:200]}")
    model = _model_id(parts[2])
    op, stream = _OPS[parts[3]]
    location, opaque = cloud_region(model, region)
    target = f"/model/{quote(model, safe=_SAFE)}/{parts[3]}" + (f"?{query}" if query else "")
    return CloudRoute(BEDROCK, op, None if opaque else model, stream, location, origin, target)


def count_tokens_body(body: bytes) -> bytes | None:
    """The Messages body inside a CountTokens request (``{"input": {"invokeModel": {"body": b64}}}``)."""
    try:
        doc = orjson.loads(body)
        inner = doc["input"]["invokeModel"]["body"]
        return base64.b64decode(inner, validate=True) if isinstance(inner, str) else None
    except (ValueError, TypeError, KeyError, RecursionError, binascii.Error):
        return None


def client_credential(headers: Headers) -> bytes | None:
    """What identifies the caller: the access key id of a SigV4 signature (not the signature, which
    changes every call), else a bearer token or ``x-api-key``."""
    auth = hdr.get(headers, b"authorization")
    if auth is not None and auth.startswith(b"AWS4-HMAC-SHA256"):
        start = auth.find(b"Credential=")
        if start >= 0:
            return auth[start + 11 :].split(b"/", 1)[0]
    if auth is not None and auth[:7].lower() == b"bearer ":
        return auth[7:].strip() or None
    return hdr.get(headers, b"x-api-key")


@dataclass(frozen=True)
class BedrockConfig:
    origin: str  # scheme://host of the runtime endpoint
    region: str | None  # the signing region (and the location of in-region model ids)
    api_key: str | None = None  # a Bedrock API key: sent as Bearer instead of signing
    inference_profiles: tuple[str, ...] = ()


class BedrockProvider:
    """Everything the proxy needs to know about Bedrock, behind ``proxy.cloud.CloudProvider``."""

    name = BEDROCK
    prefix = PREFIX

    def __init__(self, config: BedrockConfig, signer: SigV4Signer | None) -> None:
        if config.api_key is None and signer is None:
            raise ValueError("Bedrock needs a signer or an API key")
        self.config = config
        self._signer = signer

    def route(self, method: str, raw_path: str, query: str) -> CloudRoute:
        return parse_route(method, raw_path, query, self.config.origin, self.config.region)

    def messages_body(self, route: CloudRoute, body: bytes) -> bytes | None:
        """The Messages body to inspect (sessions, tools, budgets): CountTokens wraps it in base64."""
        return count_tokens_body(body) if route.op == COUNT_TOKENS else body

    def client_credential(self, headers: Headers) -> bytes | None:
        return client_credential(headers)

    async def authorize(self, route: CloudRoute, headers: Headers, body: bytes) -> list[tuple[bytes, bytes]]:
        """The upstream headers: the client's without its credentials, then the sidecar's own."""
        out = [(n, v) for n, v in headers if n not in _CLIENT_AUTH and not n.startswith(b"x-amz-")]
        if self.config.api_key is not None:
            out.append((b"authorization", b"Bearer " + self.config.api_key.encode()))
            return out
        assert self._signer is not None
        return await self._signer.sign("POST", route.origin + route.target, out, body)

    @staticmethod
    def stream_parser(content_type: bytes) -> BedrockStreamParser | None:
        return BedrockStreamParser() if content_type.startswith(EVENT_STREAM) else None

    @staticmethod
    def request_id(headers: Headers, summary: MessageSummary | None) -> str | None:
        value = hdr.get_ci(headers, b"x-amzn-requestid")
        return value.decode("latin-1")[:200] if value else None

    @staticmethod
    def error_type(headers: Headers) -> str | None:
        """Bedrock's own name for an error answer (``ValidationException:http://…`` → its first part)."""
        value = hdr.get_ci(headers, b"x-amzn-errortype")
        if not value:
            return None
        return value.split(b":", 1)[0].decode("latin-1")[:_MAX_ERROR_TYPE] or None

    @staticmethod
    def error_parts(exc: SidecarError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return bedrock_error_parts(exc)

    def local_answer(self, route: CloudRoute, query: str) -> bytes:
        """The answer to an inference-profile look-up (JSON), or ``NotFound`` when none is configured."""
        return inference_profiles(route, query, self.config.inference_profiles, self.config.region)

    @staticmethod
    def cache_route(route: CloudRoute) -> tuple[bytes, bool]:
        """The target as signed (the model id encoded one way whichever way the client sent it). The
        event stream is not rendered from JSON or back: ``invoke`` and ``invoke-with-response-stream``
        keep their own entries, and a stored event stream is replayed byte for byte."""
        return ("/bedrock" + route.target).encode(), False


def _profile(profile_id: str, region: str | None) -> dict[str, object]:
    geography, _, model = profile_id.partition(".")
    where = region or "us-east-1"
    return {
        "inferenceProfileId": profile_id,
        "inferenceProfileName": profile_id,
        "inferenceProfileArn": f"arn:aws:bedrock:{where}::inference-profile/{profile_id}",
        "description": f"{geography} inference profile for {model}",
        "models": [{"modelArn": f"arn:aws:bedrock:{where}::foundation-model/{model}"}],
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    }


def inference_profiles(route: CloudRoute, query: str, configured: Sequence[str], region: str | None) -> bytes:
    """ListInferenceProfiles / GetInferenceProfile from the configured ids (system-defined profiles)."""
    if not configured:
        raise NotFound(
            "Inference profile look-ups are not served by this gateway "
            "(configure SIDECAR_BEDROCK_INFERENCE_PROFILES to list profiles)."
        )
    if route.model is not None:
        if route.model not in configured:
            raise NotFound(f"Inference profile {route.model[:200]!r} was not found.")
        return orjson.dumps(_profile(route.model, region))
    application_only = "type=APPLICATION" in query.split("&")
    rows = [] if application_only else [_profile(p, region) for p in configured]
    return orjson.dumps({"inferenceProfileSummaries": rows})


__all__ = ["BedrockConfig", "BedrockProvider", "client_credential", "cloud_region", "parse_route"]
