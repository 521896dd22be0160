"""Where a call goes (SPEC §18): the providers, and the address of a call on a cloud route. Pure.

The first-party API is addressed by its ``/v1/…`` path alone. A call on ``/bedrock/…`` or ``/vertex/…``
is read into a :class:`CloudRoute` by its provider (``sidecar.providers``): the model comes from the
path, not the body, and the upstream origin from the region or location.
"""

from __future__ import annotations

from dataclasses import dataclass

ANTHROPIC = "anthropic"
BEDROCK = "bedrock"
VERTEX = "vertex"
PROVIDERS = (ANTHROPIC, BEDROCK, VERTEX)
GLOBAL = "global"  # the location of a cloud's global endpoint (no regional premium)

# Operations of a cloud route besides the Messages ones (``chat``, ``count_tokens``).
INFERENCE_PROFILES = "inference_profiles"  # Bedrock's control-plane look-ups, answered by the sidecar


@dataclass(frozen=True, slots=True)
class CloudRoute:
    """One request on a cloud route, read from its method and path.

    ``model`` is the URL-decoded model id (``us.anthropic.claude-sonnet-4-5-20250929-v1:0``,
    ``claude-sonnet-4-5@20250929``); ``cloud_region`` the location that serves it (``None`` when the
    path names none); ``origin`` and ``target`` what is sent upstream: ``target`` (path and query) is
    encoded exactly as it is signed and sent.
    """

    provider: str
    op: str
    model: str | None
    stream: bool
    cloud_region: str | None
    origin: str
    target: str


__all__ = ["ANTHROPIC", "BEDROCK", "GLOBAL", "INFERENCE_PROFILES", "PROVIDERS", "VERTEX", "CloudRoute"]
