"""Fuzz targets: arbitrary bytes in, and the invariants each sans-I/O module promises checked.

Every target must return normally for every input; a raised exception or a failed assertion is a
finding. :func:`one_input` is the single entry point the engines call: its first byte picks the target,
the next bytes are that target's parameters (cap, chunking, mode), the rest is the payload. Chunk
boundaries come from the input itself, so a crash file reproduces on its own.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator

import orjson

from sidecar.core.cache_plan import plan_and_apply
from sidecar.core.prompt_fingerprint import DetailCache
from sidecar.proxy.keys import make_fingerprinter
from sidecar.sansio import headers as hdr
from sidecar.sansio import traceparent
from sidecar.sansio.encoding import MAX_OUTPUT_PER_FEED, make_decoder
from sidecar.sansio.identity import HARNESS_HEADERS, resolve_app, resolve_session
from sidecar.sansio.messages import MessageSummary, StreamParser, parse_error_body, parse_message_body
from sidecar.sansio.prompt_prefix import fingerprint
from sidecar.sansio.ratelimit import parse_ratelimits
from sidecar.sansio.request import RequestInfo, inspect_body
from sidecar.sansio.sse import SSEDecoder

Target = Callable[[bytes], None]

_MAX_COUNT = 2**53
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_FINGERPRINT = re.compile(r"^key_[0-9a-f]{12}$")
_TRACEPARENT = re.compile(rb"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_DROPPED = hdr.HOP_BY_HOP | {b"host", b"content-length", b"expect"}
_SOURCES = {"header", "harness_header", "metadata", "fingerprint", "none"}


def _chunks(payload: bytes, salt: int) -> Iterator[bytes]:
    step = 1 + salt % 37
    for i in range(0, len(payload), step):
        yield payload[i : i + step]


def sse_decoder(data: bytes) -> None:
    """Split invariance, the event size cap and the buffered-bytes bound of :class:`SSEDecoder`."""
    if len(data) < 2:
        return
    cap, payload = 1 + data[0] % 96, data[2:]
    whole = SSEDecoder(cap)
    expected = whole.feed_raw(payload) + whole.close_raw()
    dec = SSEDecoder(cap)
    got = []
    for chunk in _chunks(payload, data[1]):
        got += dec.feed_raw(chunk)
        assert dec.buffered_bytes <= 3 * cap + 2, "decoder buffered past its cap"
    got += dec.close_raw()
    assert got == expected, "chunking changed the events"
    assert dec.overflowed == whole.overflowed and dec.buffered_bytes == 0
    for name, value in got:
        assert len(name) <= cap and len(value) <= cap, "an event larger than the cap was emitted"


def _check_summary(s: MessageSummary) -> None:
    for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = getattr(s.usage, name)
        assert type(value) is int and 0 <= value <= _MAX_COUNT, f"usage.{name} = {value!r}"
    assert len(s.tool_uses) == len(s.tool_use_ids) <= 1024
    assert all(isinstance(x, str) for x in (*s.tool_uses, *s.tool_use_ids))
    for label in (s.message_id, s.model, s.stop_reason, s.error_type, s.error_message):
        assert label is None or isinstance(label, str)


def stream_parser(data: bytes) -> None:
    """:class:`StreamParser` never trips its guard, is split-invariant and keeps counts sane."""
    if len(data) < 2:
        return
    cap, payload = 64 + data[0] * 8, data[2:]
    whole = StreamParser(cap)
    first_whole = whole.feed(payload)
    expected = whole.close()
    parser = StreamParser(cap)
    firsts = sum(parser.feed(chunk) for chunk in _chunks(payload, data[1]))
    got = parser.close()
    assert parser.internal_errors == 0 == whole.internal_errors, "the last-resort guard fired"
    assert got == expected, "chunking changed the summary"
    assert firsts == int(first_whole), "first-token mark fired a wrong number of times"
    _check_summary(got)


def message_body(data: bytes) -> None:
    """Non-streaming bodies and error bodies: any bytes give a sane summary."""
    _check_summary(parse_message_body(data))
    kind, message = parse_error_body(data)
    assert kind is None or isinstance(kind, str)
    assert message is None or isinstance(message, str)


def request_inspection(data: bytes) -> None:
    """:func:`inspect_body` and the session resolution that reads its result."""
    info = inspect_body(data)
    if not info.parsed:
        assert info == RequestInfo()
    assert info.model is None or (isinstance(info.model, str) and len(info.model) <= 256)
    assert isinstance(info.stream, bool)
    assert info.max_tokens is None or type(info.max_tokens) is int
    for digest in (info.system_hash, info.fingerprint):
        assert digest is None or _HEX16.match(digest)
    assert all(isinstance(i, str) and isinstance(e, bool) for i, e in info.tool_results)
    session, source = resolve_session([], info, b"x-session-id")
    assert source in _SOURCES and len(session) <= 200


def _count_markers(doc: object) -> int:
    """Non-null ``cache_control`` values anywhere in a JSON document (iterative: nesting is deep)."""
    count, stack = 0, [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += node.get("cache_control") is not None
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def cache_planner(data: bytes) -> None:
    """The planner returns the client's bytes or valid JSON with exactly the markers it reports."""
    if len(data) < 2:
        return
    mode = ("auto", "off", "force", "sometimes")[data[0] % 4]
    ttl = ("5m", "1h")[data[0] // 4 % 2]
    min_tokens = (None, 0, 1, 1024)[data[1] % 4]
    body = data[2:]
    new, plan = plan_and_apply(body, model=None, mode=mode, ttl=ttl, min_tokens=min_tokens)
    if not plan.changed:
        assert new is body and plan.markers_added == 0
        return
    before, after = orjson.loads(body), orjson.loads(new)
    assert isinstance(after, dict) and plan.reason == "added"
    assert 1 <= plan.markers_added <= 2 and len(plan.ttls) == plan.markers_added == len(plan.positions)
    assert _count_markers(after) - _count_markers(before) == plan.markers_added


def _header_list(payload: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in payload.split(b"\n")[:32]:
        name, _, value = line.partition(b":")
        out.append((name, value))
    return out


def _is_subsequence(small: list[tuple[bytes, bytes]], big: list[tuple[bytes, bytes]]) -> bool:
    it = iter(big)
    return all(pair in it for pair in small)


def headers_and_identity(data: bytes) -> None:
    """Header filtering, sidecar controls, app/session ids, key fingerprints and traceparent."""
    headers = _header_list(data)
    lowered = [(n.lower(), v) for n, v in headers]
    upstream = hdr.request_headers_for_upstream(headers)
    assert _is_subsequence(upstream, lowered), "request headers were reordered or altered"
    for name, _ in upstream:
        assert name not in _DROPPED and not name.startswith(hdr.SIDECAR_PREFIX)
    assert _is_subsequence(hdr.response_headers_for_client(headers), headers)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in hdr.sidecar_controls(headers).items())
    scoped = lowered + [(HARNESS_HEADERS[0], value) for _, value in lowered[:1]]
    app = resolve_app(scoped, b"x-app-name")
    assert isinstance(app, str) and 1 <= len(app) <= 64
    session, source = resolve_session(scoped, RequestInfo(), b"x-session-id")
    assert source in _SOURCES and len(session) <= 200
    fingerprint = make_fingerprinter(b"fuzz-salt")(lowered)
    assert fingerprint is None or _FINGERPRINT.match(fingerprint)
    for _, value in headers[:4]:
        parsed = traceparent.parse(value)
        assert parsed is None or (len(parsed[0]), len(parsed[1]), len(parsed[2])) == (32, 16, 2)
        assert _TRACEPARENT.match(traceparent.new_ref(value).header())


def content_decoding(data: bytes) -> None:
    """Garbage never raises and stays under the output cap; real gzip/deflate round-trips in chunks."""
    if not data:
        return
    payload = data[1:]
    kind = data[0] % 3
    if kind == 0:
        decode = make_decoder(b"gzip")
        assert decode is not None
        for chunk in _chunks(payload, data[0]):
            assert len(decode(chunk)) <= MAX_OUTPUT_PER_FEED
        return
    wbits = 31 if kind == 1 else zlib.MAX_WBITS
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    packed = packer.compress(payload) + packer.flush()
    decode = make_decoder(b"gzip" if kind == 1 else b"deflate")
    assert decode is not None
    out = b"".join(decode(chunk) for chunk in _chunks(packed, data[0] >> 2))
    assert out == payload, "decoded copy differs from the original"


def prompt_prefix(data: bytes) -> None:
    """Fingerprinting any JSON object never raises; a resent body fingerprints as it does afresh (the raw
    fast path equals a full recount), and no hash or name carries more than a tool name's 64 characters."""
    try:
        doc = orjson.loads(data)
    except (orjson.JSONDecodeError, RecursionError):
        return
    if not isinstance(doc, dict):
        return
    details = DetailCache()
    first = fingerprint(doc, data, model="m", prev=None, details=details)
    again = fingerprint(doc, data, model="m", prev=first, details=details)
    if first.messages is not None and again.messages is not None:
        assert list(again.messages.hashes) == list(first.messages.hashes)
        assert (again.messages.crc, again.messages.length) == (first.messages.crc, first.messages.length)
    assert again.breakpoints == first.breakpoints
    assert all(len(name) <= 64 for name in first.tool_names)


def ratelimit_headers(data: bytes) -> None:
    """Any header list: a parse or None, with labels short and plain and utilizations within 0..1."""
    limits = parse_ratelimits(_header_list(data))
    if limits is None:
        return
    for window in limits.windows:
        assert re.fullmatch(r"[a-z0-9][a-z0-9_]{0,31}", window.name)
        assert window.utilization is None or 0 <= window.utilization <= 1
    for value in (limits.status, limits.representative_claim, limits.overage_status):
        assert value is None or re.fullmatch(r"[a-z0-9][a-z0-9_]{0,31}", value)


TARGETS: tuple[tuple[str, Target], ...] = (
    ("sse_decoder", sse_decoder),
    ("stream_parser", stream_parser),
    ("message_body", message_body),
    ("request_inspection", request_inspection),
    ("cache_planner", cache_planner),
    ("headers_and_identity", headers_and_identity),
    ("content_decoding", content_decoding),
    ("prompt_prefix", prompt_prefix),
    ("ratelimit_headers", ratelimit_headers),
)
NAMES = tuple(name for name, _ in TARGETS)


def one_input(data: bytes) -> None:
    """The engines' entry point: ``data[0]`` picks the target, the rest is its input."""
    if data:
        TARGETS[data[0] % len(TARGETS)][1](data[1:])
