from __future__ import annotations

import struct
import uuid

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.sansio.eventstream import (
    MAX_PAYLOAD_BYTES,
    EventStreamDecoder,
    EventStreamError,
    Frame,
)
from sidecar.testing.fake_eventstream import chunk_frame, encode_frame, exception_frame

EVERY_TYPE = (
    (":message-type", "event"),
    ("yes", (0, True)),
    ("no", (1, False)),
    ("i8", (2, -7)),
    ("i16", (3, -30000)),
    ("i32", (4, 2_000_000_000)),
    ("i64", (5, -(2**60))),
    ("raw", (6, b"\x00\xffbytes")),
    ("text", (7, "héllo")),
    ("at", (8, 1_733_000_000_123)),
    ("id", (9, uuid.UUID(int=12345).bytes)),
)
EXPECTED_HEADERS = {
    ":message-type": "event",
    "yes": True,
    "no": False,
    "i8": -7,
    "i16": -30000,
    "i32": 2_000_000_000,
    "i64": -(2**60),
    "raw": b"\x00\xffbytes",
    "text": "héllo",
    "at": 1_733_000_000_123,
    "id": uuid.UUID(int=12345).bytes,
}


def decode_all(data: bytes, step: int | None = None) -> list[Frame]:
    decoder = EventStreamDecoder()
    out: list[Frame] = []
    if step is None:
        out += decoder.feed(data)
    else:
        for i in range(0, len(data), step):
            out += decoder.feed(data[i : i + step])
    assert decoder.close() == 0
    return out


def test_every_header_type_decodes_like_botocore() -> None:
    frame = encode_frame(EVERY_TYPE, b'{"hello": 1}')
    (ours,) = decode_all(frame)
    assert ours.headers == EXPECTED_HEADERS
    assert ours.payload == b'{"hello": 1}'
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    (theirs,) = list(buffer)
    assert theirs.payload == ours.payload
    # botocore returns timestamps as datetimes; every other type must match value for value.
    assert {k: v for k, v in theirs.headers.items() if k != "at"} == {
        k: v for k, v in ours.headers.items() if k != "at"
    }


def test_split_at_every_offset_gives_the_same_frames() -> None:
    data = (
        chunk_frame({"type": "message_start", "message": {"id": "m"}}, padding=5)
        + encode_frame(EVERY_TYPE, b"")
        + exception_frame("throttlingException", "Too many requests")
    )
    whole = decode_all(data)
    assert len(whole) == 3
    assert whole[2].text(":exception-type") == "throttlingException"
    for cut in range(1, len(data)):
        decoder = EventStreamDecoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert got == whole, cut
    assert decode_all(data, step=1) == whole


def test_an_empty_payload_and_no_headers_is_a_valid_frame() -> None:
    (frame,) = decode_all(encode_frame({}, b""))
    assert frame == Frame({}, b"")


@pytest.mark.parametrize("offset", [0, 5, 8, 14, -5, -1])
def test_a_flipped_bit_anywhere_fails_the_checks(offset: int) -> None:
    data = bytearray(chunk_frame({"type": "ping"}))
    data[offset] ^= 0x10
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError):
        decoder.feed(bytes(data))
    assert decoder.failed
    # After a bad frame nothing is decoded any more, even a good one.
    assert decoder.feed(chunk_frame({"type": "ping"})) == []
    assert decoder.close() == 0


def test_a_huge_declared_length_is_refused_before_it_is_buffered() -> None:
    total = 16 + MAX_PAYLOAD_BYTES + 1
    prelude = struct.pack(">II", total, 0)
    from zlib import crc32

    prelude += struct.pack(">I", crc32(prelude))
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="exceeds"):
        decoder.feed(prelude)
    assert decoder.buffered_bytes == 0


def test_a_length_shorter_than_the_frame_parts_is_refused() -> None:
    from zlib import crc32

    prelude = struct.pack(">II", 14, 0)
    prelude += struct.pack(">I", crc32(prelude))
    with pytest.raises(EventStreamError, match="shorter"):
        EventStreamDecoder().feed(prelude + b"\x00" * 8)


def test_an_unknown_header_type_is_refused() -> None:
    head = bytes([1]) + b"x" + bytes([42])
    total = 12 + len(head) + 4
    from zlib import crc32

    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", crc32(prelude))
    message = prelude + head
    with pytest.raises(EventStreamError, match="header type"):
        EventStreamDecoder().feed(message + struct.pack(">I", crc32(message)))


def test_a_truncated_stream_reports_its_leftover_bytes() -> None:
    first, second = chunk_frame({"type": "ping"}), chunk_frame({"type": "message_stop"})
    decoder = EventStreamDecoder()
    frames = decoder.feed(first + second[:-3])
    assert len(frames) == 1
    assert decoder.buffered_bytes == len(second) - 3
    assert decoder.close() == len(second) - 3


def test_close_counts_an_unfinished_frame() -> None:
    data = chunk_frame({"type": "ping"})
    decoder = EventStreamDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.close() == len(data) - 1


header_values = st.one_of(
    st.text(max_size=40),
    st.tuples(st.just(6), st.binary(max_size=40)),
    st.tuples(st.just(4), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(5), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.sampled_from([0, 1]), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.dictionaries(st.text(min_size=1, max_size=20), header_values, max_size=5),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=4,
    ),
    step=st.integers(1, 64),
)
def test_round_trip_of_random_frames(frames: list[tuple[dict[str, object], bytes]], step: int) -> None:
    data = b"".join(encode_frame(h, p) for h, p in frames)  # type: ignore[arg-type]
    got = decode_all(data, step)
    assert [f.payload for f in got] == [p for _, p in frames]
    for frame, (headers, _) in zip(got, frames, strict=True):
        assert set(frame.headers) == set(headers)
        for name, value in headers.items():
            expected = value if isinstance(value, str) else value[1]  # type: ignore[index]
            if isinstance(value, tuple) and value[0] in (0, 1):
                expected = value[0] == 0
            assert frame.headers[name] == expected
