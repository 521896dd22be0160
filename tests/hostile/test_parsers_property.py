"""Hostile bytes through the sans-I/O parsers: memory stays bounded, nothing raises, results stay sane.

``tests/sansio`` already covers arbitrary bytes, split invariance and deep nesting for the decoder and
parsers; these tests add real allocation measurements (``tracemalloc``), compressed streams, the cache
planner and identity code, and use the fuzz targets (``fuzz/targets.py``) as oracles for structured
hypothesis inputs.
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz import targets
from sidecar.sansio.encoding import MAX_OUTPUT_PER_FEED, make_decoder
from sidecar.sansio.identity import session_from_metadata
from sidecar.sansio.messages import MessageSummary, StreamParser, parse_message_body
from sidecar.sansio.request import inspect_body
from sidecar.sansio.sse import Chunk

MB = 1_000_000
CHUNK = 64 * 1024


def sse(event: str, payload: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


START = sse("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 11}}})
DELTA = sse(
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello world"}},
)
END = sse(
    "message_delta",
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
) + sse("message_stop", {"type": "message_stop"})


def traced_peak(run: Callable[[], Any]) -> tuple[Any, float]:
    """``run()``'s result and the peak of memory it allocated (MB), as Python's allocator traced it."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = run()
        return result, (tracemalloc.get_traced_memory()[1] - base) / MB
    finally:
        tracemalloc.stop()


def feed_all(parser: StreamParser, chunks: Iterator[Chunk]) -> MessageSummary:
    for chunk in chunks:
        parser.feed(chunk)
    return parser.close()


# --- 50 MB through the parser, measured ------------------------------------------------------------


def test_fifty_megabytes_of_events_in_chunks_peak_under_a_few_megabytes() -> None:
    n = 50 * MB // len(DELTA)
    stream = memoryview(START + DELTA * n + END)  # built before tracing starts

    def run() -> tuple[MessageSummary, StreamParser]:
        parser = StreamParser()
        chunks = (stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK))
        return feed_all(parser, chunks), parser

    (summary, parser), peak = traced_peak(run)
    assert len(stream) >= 50 * MB
    assert peak < 4, f"{peak:.1f} MB traced while parsing"
    assert summary.events == n + 3 and parser.overflowed == 0 and parser.internal_errors == 0
    assert (summary.usage.input_tokens, summary.usage.output_tokens) == (11, 7)
    assert summary.complete and summary.stop_reason == "end_turn"


SHAPES = {
    # name: (prefix, repeated piece, megabytes fed, events dropped for size). Many-line shapes cost a
    # Python loop iteration per line, so they get fewer megabytes: the bound does not depend on size.
    "one endless data line": (b"event: content_block_delta\ndata: ", b"a" * CHUNK, 50, 1),
    "one endless comment": (b":", b"c" * CHUNK, 50, 0),
    "one event of endless data lines": (b"", b"data: " + b"x" * 58 + b"\n", 10, 1),
    "endless event-name lines": (b"", b"event: " + b"n" * 57 + b"\n", 10, 0),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_endless_shapes_stay_bounded_and_the_next_event_still_counts(shape: str) -> None:
    prefix, piece, megabytes, dropped = SHAPES[shape]
    piece = piece * max(1, CHUNK // len(piece))

    def run() -> tuple[MessageSummary, StreamParser]:
        parser = StreamParser()
        parser.feed(prefix)
        for _ in range(megabytes * MB // len(piece)):
            parser.feed(piece)
        parser.feed(b"\n\n" + START + END)
        return parser.close(), parser

    (summary, parser), peak = traced_peak(run)
    assert peak < 4, f"{peak:.1f} MB traced for {shape}"
    assert parser.overflowed == dropped
    assert (summary.usage.input_tokens, summary.usage.output_tokens, summary.complete) == (11, 7, True)


# --- compressed answers ----------------------------------------------------------------------------


def gzip_bytes(data: bytes, wbits: int = 31, level: int = 6) -> bytes:
    packer = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def test_gzip_stream_parses_like_the_plain_one_with_bounded_memory() -> None:
    plain = START + DELTA * (20 * MB // len(DELTA)) + END
    packed = gzip_bytes(plain)  # about 400:1 here, so one network chunk inflates to megabytes
    expected = feed_all(StreamParser(), iter([plain]))

    def run() -> MessageSummary:
        decode = make_decoder(b"gzip")
        assert decode is not None
        chunks = (decode(packed[i : i + 16384]) for i in range(0, len(packed), 16384))
        return feed_all(StreamParser(), chunks)

    summary, peak = traced_peak(run)
    assert summary == expected and summary.usage.output_tokens == 7
    assert peak < 2 * MAX_OUTPUT_PER_FEED / MB + 4


def test_decompression_bomb_is_cut_at_the_per_feed_cap() -> None:
    bomb = gzip_bytes(bytes(64 * MB), level=9)  # 64 MB of zeros in about 64 KB
    decode = make_decoder(b"x-gzip")
    assert decode is not None

    def run() -> list[int]:
        return [len(decode(bomb[:40_000])), len(decode(bomb[40_000:])), len(decode(b"more"))]

    sizes, peak = traced_peak(run)
    assert sizes == [MAX_OUTPUT_PER_FEED, 0, 0]  # past the cap the copy is abandoned for good
    assert peak < 2 * MAX_OUTPUT_PER_FEED / MB + 2


def test_compressed_json_answer_over_a_megabyte_still_yields_its_usage() -> None:
    message = {
        "id": "msg_big",
        "type": "message",
        "content": [{"type": "text", "text": "lorem ipsum " * 300_000}],  # 3.6 MB before compression
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 21, "output_tokens": 64_000},  # after the content, as the API sends it
    }
    for encoding, wbits in ((b"gzip", 31), (b"deflate", zlib.MAX_WBITS)):
        decode = make_decoder(encoding)
        assert decode is not None
        summary = parse_message_body(decode(gzip_bytes(orjson.dumps(message), wbits)))
        assert (summary.usage.input_tokens, summary.usage.output_tokens) == (21, 64_000)
        assert summary.complete


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 300), st.sampled_from([0, 1, 2]))
def test_decoders_round_trip_in_any_chunking(data: bytes, step: int, kind: int) -> None:
    targets.content_decoding(bytes([kind | (step << 2) & 0xFC]) + data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_garbage_claiming_to_be_gzip_never_raises(data: bytes) -> None:
    targets.content_decoding(b"\x00" + data)


# --- requests -----------------------------------------------------------------------------------------


def test_fingerprint_is_unchanged_by_hashing_in_parts() -> None:
    first_user = [{"type": "text", "text": "Summarise this ticket"}]
    body = {"system": "You are terse.", "messages": [{"role": "user", "content": first_user}]}
    expected = hashlib.blake2b(
        b"You are terse." + b"\x1f" + orjson.dumps(first_user), digest_size=8
    ).hexdigest()
    assert inspect_body(orjson.dumps(body)).fingerprint == expected


def test_absurd_model_ids_are_capped() -> None:
    info = inspect_body(orjson.dumps({"model": "m" * 5_000_000, "messages": []}))
    assert info.model == "m" * 256


@pytest.mark.parametrize(
    "user_id",
    [
        '{"a":' + "[" * 100_000 + "]" * 100_000 + "}",  # json.loads: RecursionError
        '{"session_id": ' + "1" * 5000 + "}",  # beyond Python's int-from-text digit limit
        "{" * 10,
    ],
)
def test_hostile_metadata_user_id_yields_no_session_and_no_error(user_id: str) -> None:
    assert session_from_metadata(user_id) is None


def test_lone_surrogates_in_a_metadata_session_are_replaced() -> None:
    # The JSON escape survives orjson (it is inside a string) and json.loads turns it into U+DC80.
    session = session_from_metadata(json.dumps({"session_id": "\udc80abc"}))
    assert session == "?abc" and session.encode("utf-8")


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["ephemeral", "5m", "1h", "text", "tool_use", "tool_result", "thinking", ""])
)
KEYS = [
    *("model", "messages", "system", "tools", "role", "content", "type", "text", "cache_control"),
    *("ttl", "defer_loading", "source", "tool_use_id", "is_error", "metadata", "user_id", "max_tokens"),
]
DOCS = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    max_leaves=40,
)


MARKER = st.none() | st.sampled_from(
    [
        *({"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral", "ttl": "5m"}),
        *(
            {"type": "ephemeral", "ttl": "10m"},
            {"type": "persistent"},
            {"type": "ephemeral", "x": 1},
            "1h",
            7,
        ),
    ]
)
BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "text", "thinking", "tool_result", "image", "document"])},
    optional={
        "text": st.text(max_size=30) | JSON_LEAVES,
        "cache_control": MARKER,
        "content": st.lists(
            st.fixed_dictionaries({"type": st.just("text")}, optional={"cache_control": MARKER})
        ),
    },
)
TOOL = st.fixed_dictionaries(
    {"name": st.text(max_size=6)}, optional={"cache_control": MARKER, "defer_loading": JSON_LEAVES}
)
MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]),
        "content": st.text(max_size=8) | st.lists(BLOCK, max_size=3),
    }
)
# Request-shaped documents where the planner has real choices to make, with hostile values mixed in.
REQUESTS = st.fixed_dictionaries(
    {
        "system": st.text(max_size=40) | st.lists(BLOCK, max_size=4) | st.lists(BLOCK, max_size=4) | DOCS,
        "messages": st.lists(MESSAGE, max_size=3) | DOCS,
    },
    optional={
        "tools": st.lists(TOOL | DOCS, max_size=4) | DOCS,
        "cache_control": MARKER,
        "model": JSON_LEAVES,
    },
)


def dumps_lenient(doc: object) -> bytes:
    # orjson refuses integers beyond 64 bits; the stdlib writes them, as a hostile client would.
    return json.dumps(doc).encode()


@settings(max_examples=300, deadline=None)
@given(REQUESTS, st.sampled_from([b"\x00\x01", b"\x02\x00", b"\x06\x02", b"\x04\x03", b"\x01\x00"]))
def test_planner_keeps_its_promises_on_hostile_requests(doc: object, params: bytes) -> None:
    # params: (auto, min 0), (force), (force, 1h), (auto, 5m, min 1024), (off)
    targets.cache_planner(params + dumps_lenient(doc))


@settings(max_examples=300, deadline=None)
@given(DOCS)
def test_request_inspection_keeps_its_promises_on_hostile_documents(doc: object) -> None:
    targets.request_inspection(dumps_lenient(doc))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.binary(min_size=2, max_size=2))
def test_planner_on_arbitrary_bytes(data: bytes, params: bytes) -> None:
    targets.cache_planner(params + data)


def test_planner_on_deep_nesting_and_huge_lists() -> None:
    deep: dict[str, Any] = {"type": "text", "text": "x"}
    for _ in range(400):  # 800 levels: under orjson's parse limit, past the planner's nesting cap
        deep = {"type": "tool_result", "content": [deep], "cache_control": {"type": "ephemeral"}}
    bodies = [
        b'{"system": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        json.dumps({"system": "s" * 5000, "messages": [{"role": "user", "content": [deep]}]}).encode(),
        orjson.dumps({"tools": [{"name": f"t{i}"} for i in range(100_000)], "system": "x" * 9000}),
    ]
    for body in bodies:
        for mode in (0, 2):  # auto, force
            targets.cache_planner(bytes([mode, 3]) + body)


HEADER_NAMES = st.sampled_from(
    [
        *(b"x-api-key", b"authorization", b"x-session-id", b"x-app-name", b"traceparent", b"connection"),
        *(b"host", b"content-length", b"x-sidecar-prompt-cache", b"X-Session-ID", b"keep-alive", b"te"),
    ]
)
HEADER_VALUES = st.binary(max_size=300) | st.sampled_from(
    [b"Bearer sk-ant-x", b"bearer ", b" \t ", b"\xff\xfe", b"close, x-api-key", b"00-" + b"a" * 32]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12))
def test_header_filtering_and_identity_on_hostile_values(headers: list[tuple[bytes, bytes]]) -> None:
    targets.headers_and_identity(b"\n".join(n + b":" + v.replace(b"\n", b" ") for n, v in headers))


def test_megabyte_header_values_give_bounded_ids() -> None:
    big = b"\xc3" + b"s" * MB + b"\xff"
    targets.headers_and_identity(b"x-session-id:" + big + b"\nx-app-name:" + big + b"\ntraceparent:" + big)
