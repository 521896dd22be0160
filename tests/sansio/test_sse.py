from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.sansio.sse import SSEDecoder, SSEEvent

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sse"
STREAMS = sorted(p.name for p in FIXTURES.iterdir())


def decode(*chunks: bytes, cap: int | None = None) -> list[SSEEvent]:
    dec = SSEDecoder() if cap is None else SSEDecoder(cap)
    events = [e for c in chunks for e in dec.feed(c)]
    return events + dec.close()


def ev(event: str, data: str) -> SSEEvent:
    return SSEEvent(event=event, data=data)


def reference(stream: bytes) -> list[SSEEvent]:
    """A deliberately naive whole-input decoder, written from the WHATWG text, to compare against."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    events: list[SSEEvent] = []
    name, data = "", list[str]()
    for line in [*re.split(r"\r\n|\r|\n", text), ""]:
        if line == "":
            if data or name:
                events.append(ev(name or "message", "\n".join(data)))
            name, data = "", list[str]()
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
    return events


# --- field rules -------------------------------------------------------------------------------


def test_basic_events_and_default_type() -> None:
    stream = b'event: ping\ndata: {"type": "ping"}\n\ndata: plain\n\n'
    assert decode(stream) == [ev("ping", '{"type": "ping"}'), ev("message", "plain")]


def test_multiline_data_joined_with_lf_and_one_space_stripped() -> None:
    stream = b"data: a\ndata:b\ndata:  c\ndata\n\n"
    assert decode(stream) == [ev("message", "a\nb\n c\n")]


def test_comments_id_retry_and_unknown_fields_ignored() -> None:
    stream = b": hello\nid: 7\nretry: 10\nfoo: bar\nevent: x\ndata: 1\n\n:only a comment\nid: 8\n\n"
    assert decode(stream) == [ev("x", "1")]


def test_event_without_data_is_emitted_like_the_sdk() -> None:
    # The SDK's decoder dispatches an event that has a name but no data line.
    assert decode(b"event: message_stop\n\n") == [ev("message_stop", "")]
    assert decode(b"event:\n\n") == []


def test_last_event_field_wins() -> None:
    assert decode(b"event: a\nevent: b\ndata: 1\n\n") == [ev("b", "1")]


# --- line endings ------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending_gives_same_events(eol: bytes) -> None:
    lines = [b"event: a", b"data: 1", b"data: 2", b"", b"data: 3", b"", b""]
    assert decode(eol.join(lines)) == [ev("a", "1\n2"), ev("message", "3")]


def test_cr_then_lf_across_chunks_is_one_line_end() -> None:
    # Two line ends here would be a blank line and dispatch "a" and "b" separately.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [ev("message", "a\nb")]


def test_cr_cr_is_two_line_ends_even_across_chunks() -> None:
    assert decode(b"data: a\r", b"\rdata: b\r\r") == [ev("message", "a"), ev("message", "b")]


def test_empty_chunks_do_not_lose_a_pending_cr() -> None:
    assert decode(b"data: a\r", b"", b"\ndata: b\n\n") == [ev("message", "a\nb")]


def test_unicode_line_separators_are_not_line_ends() -> None:
    # str.splitlines() would split on these; SSE must not.
    data = "a\u2028b\x85c\x0bd\x0ce"
    assert decode(f"data: {data}\n\n".encode()) == [ev("message", data)]


def test_fixture_line_endings_survived_checkout() -> None:
    crlf, cr = (FIXTURES / "crlf.sse").read_bytes(), (FIXTURES / "cr_only.sse").read_bytes()
    assert b"\r\n" in crlf and crlf.count(b"\r") == crlf.count(b"\r\n")
    assert b"\r" in cr and b"\n" not in cr


# --- end of stream -----------------------------------------------------------------------------


def test_close_emits_final_event_without_blank_line() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"event: a\ndata: 1\n\nevent: message_stop\ndata: {}\n") == [ev("a", "1")]
    assert dec.close() == [ev("message_stop", "{}")]
    assert dec.close() == []


def test_close_emits_unterminated_last_line() -> None:
    assert decode(b"event: message_stop\ndata: {") == [ev("message_stop", "{")]


def test_close_with_nothing_pending() -> None:
    assert decode(b"") == []
    assert decode(b"data: 1\n\n", b": trailing comment") == [ev("message", "1")]


# --- bytes -------------------------------------------------------------------------------------


def test_bom_skipped_at_start_only() -> None:
    bom = b"\xef\xbb\xbf"
    assert decode(bom + b"data: 1\n\n") == [ev("message", "1")]
    assert decode(b"\xef", b"\xbb", b"\xbfdata: 1\n\n") == [ev("message", "1")]
    # Later, a BOM is part of the field name, so the line is an unknown field.
    assert decode(b"data: 1\n\n" + bom + b"data: 2\n\n") == [ev("message", "1")]
    # A lone BOM prefix at EOF is ordinary (invalid) text.
    assert decode(b"\xef") == []
    assert decode(b"\xef\xbb") == []


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode(b"event: \xff\ndata: a\xe2\x82b\n\n") == [ev("\ufffd", "a\ufffdb")]


def test_bytearray_and_memoryview_chunks() -> None:
    dec = SSEDecoder()
    assert dec.feed(bytearray(b"data: 1\n")) == []
    assert dec.feed(memoryview(b"\ndata: 2\n\n")) == [ev("message", "1"), ev("message", "2")]


# --- split invariance --------------------------------------------------------------------------


@pytest.mark.parametrize("name", STREAMS)
def test_fixture_split_at_every_offset(name: str) -> None:
    stream = (FIXTURES / name).read_bytes()
    whole = decode(stream)
    assert whole == reference(stream)
    assert len(whole) >= 4
    for i in range(len(stream) + 1):
        assert decode(stream[:i], stream[i:]) == whole, i
    assert decode(*[stream[i : i + 1] for i in range(len(stream))]) == whole


def test_fixture_event_names_match_payload_types() -> None:
    stream = (FIXTURES / "tool_use_response.txt").read_bytes()
    names = [e.event for e in decode(stream)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert len(names) == 15


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


SSE_ALPHABET = st.sampled_from(
    [b"data", b"event", b":", b" ", b"x", b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\xff", b"\xc3\xa9", b"id"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SSE_ALPHABET, max_size=60).map(b"".join), st.lists(st.integers(0, 10_000), max_size=8))
def test_random_sse_like_streams_match_reference_in_any_chunking(stream: bytes, cuts: list[int]) -> None:
    expected = reference(stream)
    assert decode(stream) == expected
    assert decode(*chunked(stream, cuts)) == expected


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(0, 10_000), max_size=12))
def test_fixtures_in_random_chunkings(name: str, cuts: list[int]) -> None:
    stream = (FIXTURES / name).read_bytes()
    assert decode(*chunked(stream, cuts)) == decode(stream)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 1000), max_size=6), st.integers(1, 64))
def test_arbitrary_bytes_never_raise_and_stay_split_invariant(data: bytes, cuts: list[int], cap: int) -> None:
    whole = decode(data, cap=cap)
    assert decode(*chunked(data, cuts), cap=cap) == whole
    dec = SSEDecoder(cap)
    for piece in chunked(data, cuts):
        dec.feed(piece)
        assert dec.buffered_bytes <= 3 * cap


# --- size cap ----------------------------------------------------------------------------------


def test_oversized_data_line_drops_that_event_only() -> None:
    big = b"data: " + b"x" * 100 + b"\n"
    dec = SSEDecoder(64)
    out = dec.feed(b"event: a\ndata: 1\n\nevent: big\n" + big + b"data: 2\n\nevent: c\ndata: 3\n\n")
    assert out == [ev("a", "1"), ev("c", "3")]
    assert dec.overflowed == 1


def test_cap_boundary_is_the_line_length() -> None:
    # "data: " + 58 bytes is a 64-byte line: kept at cap 64; one byte more is dropped.
    assert decode(b"data: " + b"y" * 58 + b"\n\n", cap=64) == [ev("message", "y" * 58)]
    dec = SSEDecoder(64)
    assert dec.feed(b"data: " + b"y" * 59 + b"\n\n") == []
    assert dec.overflowed == 1


def test_many_data_lines_over_cap_drop_the_event() -> None:
    # Each 46-byte line fits the cap of 64; together the data is 2 * (40 + 1) = 82 bytes.
    dec = SSEDecoder(64)
    out = dec.feed(b"data: " + b"z" * 40 + b"\n" + b"data: " + b"z" * 40 + b"\n" + b"data: 1\n\ndata: ok\n\n")
    assert out == [ev("message", "ok")]
    assert dec.overflowed == 1


def test_oversized_comment_is_ignored_not_counted() -> None:
    dec = SSEDecoder(16)
    assert dec.feed(b":" + b"c" * 100 + b"\ndata: 1\n\n") == [ev("message", "1")]
    assert [e for c in (b":" + b"c" * 50, b"c" * 50 + b"\ndata: 2\n\n") for e in dec.feed(c)] == [
        ev("message", "2")
    ]
    assert dec.overflowed == 0


def test_overflow_at_eof_is_counted() -> None:
    dec = SSEDecoder(16)
    assert dec.feed(b"data: " + b"q" * 40) == []
    assert dec.close() == []
    assert dec.overflowed == 1


def test_fifty_megabyte_line_stays_bounded() -> None:
    cap = 1 << 20
    dec = SSEDecoder(cap)
    assert dec.feed(b"event: content_block_delta\ndata: ") == []
    piece = b"a" * (64 * 1024)
    peak = 0
    for _ in range(50 * 1024 * 1024 // len(piece)):
        assert dec.feed(piece) == []
        peak = max(peak, dec.buffered_bytes)
    assert peak <= cap
    assert dec.feed(b"\n\nevent: message_stop\ndata: {}\n\n") == [ev("message_stop", "{}")]
    assert dec.overflowed == 1
    assert dec.buffered_bytes == 0
