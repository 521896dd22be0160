"""The one deliberate change to a response body: batch ``results_url`` pointing back at the sidecar.

Without it, ``client.messages.batches.results()`` would download from the upstream host directly and
the sidecar would never see it (SPEC R-PX-1b). The public origin comes from settings, never from
the client's ``Host`` header.
"""

from __future__ import annotations

import re

from sidecar.sansio.encoding import Decoder

_BATCH_OBJECT = re.compile(r"^/v1/messages/batches(/[^/]+(/cancel)?)?/?$")


def is_batch_object_path(path: str) -> bool:
    """Paths that answer batch objects or lists of them (not ``…/results``, which is JSONL)."""
    return _BATCH_OBJECT.match(path) is not None


def rewrite_results_url(
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    decoder: Decoder | None,
    origins: tuple[str, str],
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Replace the upstream origin inside ``"results_url"`` values; headers fixed to match the body."""
    upstream, public = origins
    if not upstream or not public or decoder is None:
        return body, headers
    plain = decoder(body)
    pattern = re.compile(rb'("results_url"\s*:\s*")' + re.escape(upstream.encode()) + rb"(?=/)")
    new, count = pattern.subn(lambda m: m.group(1) + public.encode(), plain)
    if count == 0:
        return body, headers
    # The rewritten body is sent decoded, so the encoding header no longer applies.
    kept = [(n, v) for n, v in headers if n.lower() not in (b"content-encoding", b"content-length")]
    return new, [*kept, (b"content-length", str(len(new)).encode())]
