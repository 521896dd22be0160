"""SigV4 verification for the fake Bedrock, by botocore's own signer and fixed test credentials.

The fake recomputes the signature of what it received — method, raw path and query, the headers named
in ``SignedHeaders``, the body — at the request's ``X-Amz-Date``, with the secret it shares with the
test, and compares. Anything else (wrong key, region or service, a header or byte changed after
signing, a stale date) is refused, as AWS refuses it.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300


@dataclass(frozen=True)
class FakeAwsCredentials:
    """Fixed test credentials (never real ones); ``session_token`` makes them temporary credentials."""

    access_key: str = "AKIDSIDECARTEST00001"
    secret_key: str = "sidecar/test/secret/key/not-a-real-one-0001"
    session_token: str | None = None
    region: str = "us-east-1"
    service: str = "bedrock"


def _fields(authorization: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in authorization[len(ALGORITHM) :].split(","):
        name, _, value = part.strip().partition("=")
        out[name] = value
    return out


def verify_sigv4(
    creds: FakeAwsCredentials,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    now: datetime | None = None,
) -> str | None:
    """``None`` when the request carries a valid signature by ``creds``; else why not (for the 403)."""

    def get(name: str) -> list[str]:
        return [v for k, v in headers if k.lower() == name]

    auth = (get("authorization") or [""])[0]
    if not auth.startswith(ALGORITHM + " "):
        return "Missing Authentication Token"
    fields = _fields(auth)
    scope = fields.get("Credential", "").split("/")
    if len(scope) != 5 or scope[0] != creds.access_key:
        return "The security token included in the request is invalid."
    if scope[2:] != [creds.region, creds.service, "aws4_request"]:
        return f"Credential should be scoped to a valid region and service: {'/'.join(scope[1:])}"
    stamp = (get("x-amz-date") or [""])[0]
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "X-Amz-Date is missing or malformed"
    if abs(((now or datetime.now(UTC)) - signed_at).total_seconds()) > MAX_SKEW_S or stamp[:8] != scope[1]:
        return "Signature expired"
    if creds.session_token is not None and get("x-amz-security-token") != [creds.session_token]:
        return "The security token included in the request is invalid."
    signed = fields.get("SignedHeaders", "").split(";")
    request = AWSRequest(method=method, url=url, data=body)
    for name in signed:
        values = get(name)
        if not values:
            return f"Signed header {name!r} is missing"
        request.headers[name] = ",".join(values)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.session_token),
                       creds.service, creds.region)  # fmt: skip
    if signer.signed_headers(signer.headers_to_sign(request)) != ";".join(signed):
        return "SignedHeaders do not match the request"
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return None


__all__ = ["FakeAwsCredentials", "verify_sigv4"]
