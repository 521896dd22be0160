"""The providers as the settings configure them (``app`` wires them into the proxy)."""

from __future__ import annotations

from urllib.parse import urlsplit

from sidecar.errors import ConfigError
from sidecar.providers.aws_auth import AwsCredentials, SigV4Signer
from sidecar.providers.bedrock import BedrockConfig, BedrockProvider
from sidecar.providers.google_auth import GoogleTokens
from sidecar.providers.vertex import VertexConfig, VertexProvider
from sidecar.settings import Settings

BEDROCK_HINT = "set SIDECAR_BEDROCK_REGION (or AWS_REGION) or SIDECAR_BEDROCK_URL"


def _region_of(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "bedrock-runtime" and parts[-2:] == ["amazonaws", "com"]:
        return parts[1]
    return None


def bedrock_from_settings(settings: Settings) -> BedrockProvider | None:
    """Bedrock as configured (``None`` when neither a region nor a URL is set). Loads no credentials:
    the chain is read on the first call. Raises ``ConfigError`` when calls could not be signed."""
    region, url, key = settings.bedrock_region, settings.bedrock_url, settings.bedrock_api_key
    if region is None and url is None:
        return None
    region = region or _region_of(url or "")
    if region is None and key is None:
        raise ConfigError(
            "SIDECAR_BEDROCK_REGION: required to sign Bedrock requests sent to SIDECAR_BEDROCK_URL "
            "(or set SIDECAR_BEDROCK_API_KEY)"
        )
    origin = url or f"https://bedrock-runtime.{region}.amazonaws.com"
    signer = SigV4Signer(AwsCredentials(), region) if key is None and region is not None else None
    config = BedrockConfig(origin, region, key, settings.bedrock_inference_profiles)
    return BedrockProvider(config, signer)


def vertex_from_settings(settings: Settings) -> VertexProvider:
    """Vertex AI; Application Default Credentials are read on the first call."""
    return VertexProvider(VertexConfig(settings.vertex_url), GoogleTokens())


__all__ = ["BEDROCK_HINT", "bedrock_from_settings", "vertex_from_settings"]
