"""Where a prompt block changed, told from hashes: volatile tokens (timestamps, ids, digit runs) and chunks.

A *block detail* reduces one block of prompt text to values that hold none of its text: a hash of the
text with every volatile token masked (the *skeleton*), per-kind hashes of the token values, the hashes of
the first :data:`MAX_TOKENS` tokens in order, and the hashes of up to :data:`CHUNKS` equal byte chunks.
Two details of the same block on consecutive calls say where the block changed: when the skeletons agree,
the first token whose hash differs (its kind and position are read from the current text, which the
caller has); otherwise the first chunk that differs. Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
import zlib
from array import array
from dataclasses import dataclass

# Order matters: at a position the first alternative that matches wins. ASCII digits and plain spaces
# only, so that the str and bytes forms agree and no token spans lines.
_PATTERN = r"""
    (?P<uuid>(?<![0-9A-Za-z])[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}(?![0-9A-Za-z]))
  | (?P<timestamp>
        (?<![0-9A-Za-z])
        (?: [0-9]{4}-[0-9]{2}-[0-9]{2}
            (?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?
          | [0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?
          | [0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}
          | 1[0-9]{9}(?:[0-9]{3})?
          | MONTH[a-z]*\.?[ ][0-9]{1,2}(?:st|nd|rd|th)?,?[ ][0-9]{4}
          | [0-9]{1,2}[ ]MONTH[a-z]*\.?,?[ ][0-9]{4}
          | (?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day
        )
        (?![0-9])
    )
  | (?P<hex>(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}(?![0-9A-Za-z]))
  | (?P<number>[0-9]+)
""".replace("MONTH", "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)")
TOKEN = re.compile(_PATTERN, re.VERBOSE)
TOKEN_BYTES = re.compile(_PATTERN.encode(), re.VERBOSE)
# Every token holds an ASCII digit except a weekday name: only lines with one of those are scanned.
_WEEKDAY_BYTES = re.compile(rb"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day")
_DIGIT_MARKS = bytes(1 if 0x30 <= i <= 0x39 else 0 for i in range(256))
KINDS = ("timestamp", "uuid", "hex", "number")
# How a change of each kind reads in a cache-miss detail.
KIND_WORDS = {
    "timestamp": "digit run, timestamp-like",
    "uuid": "uuid",
    "hex": "hex id",
    "number": "digit run, counter or id",
}
PLACEHOLDER = {kind: f"\x00{i}\x00".encode() for i, kind in enumerate(KINDS)}
MAX_TOKENS = 64  # tokens hashed one by one; later ones share one hash
CHUNKS = 32
_MIN_CHUNK = 64  # bytes


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def token_lines(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of the lines that can hold a token, in order (the rest holds none)."""
    starts: set[int] = set()
    marks = data.translate(_DIGIT_MARKS)  # C speed; the regex would visit every character
    i = marks.find(1)
    while i >= 0:
        start = data.rfind(b"\n", 0, i) + 1
        end = data.find(b"\n", i)
        starts.add(start)
        i = marks.find(1, end) if end >= 0 else -1
    for match in _WEEKDAY_BYTES.finditer(data):
        starts.add(data.rfind(b"\n", 0, match.start()) + 1)
    spans = []
    for start in sorted(starts):
        end = data.find(b"\n", start)
        spans.append((start, len(data) if end < 0 else end))
    return spans


def iter_tokens(data: bytes) -> list[re.Match[bytes]]:
    """The volatile tokens of ``data``, in order (a regex pass over the lines that can hold one)."""
    return [m for start, end in token_lines(data) for m in TOKEN_BYTES.finditer(data, start, end)]


@dataclass(frozen=True, slots=True)
class BlockDetail:
    """What :func:`describe_block_change` needs of a block's previous text. ``tokens`` holds
    ``kind index << 32 | crc32(value)`` of the first :data:`MAX_TOKENS` tokens; ``overflow`` hashes the
    rest; ``chunks`` are crc32s of ``chunk``-byte slices of the UTF-8 text."""

    skeleton: int
    kinds: tuple[int, int, int, int]
    tokens: array[int]
    overflow: int
    chunk: int
    chunks: array[int]
    size: int  # bytes


def block_detail(text: str) -> BlockDetail:
    """The detail of one block's text. Costs a regex pass over its lines holding a digit or a weekday
    name (about 0.5 ms per 100 kB of prose), so callers compute it once per distinct text."""
    data = encode(text)
    skeleton = 0
    kinds = [0, 0, 0, 0]
    tokens: array[int] = array("Q")
    overflow = 0
    pos = 0
    for match in iter_tokens(data):
        kind = KINDS.index(match.lastgroup or "number")
        value = match.group()
        skeleton = zlib.crc32(PLACEHOLDER[KINDS[kind]], zlib.crc32(data[pos : match.start()], skeleton))
        kinds[kind] = zlib.crc32(value + b"\x1f", kinds[kind])
        if len(tokens) < MAX_TOKENS:
            tokens.append(kind << 32 | zlib.crc32(value))
        else:
            overflow = zlib.crc32(value + b"\x1f", overflow)
        pos = match.end()
    skeleton = zlib.crc32(data[pos:], skeleton)
    chunk = max(_MIN_CHUNK, -(-len(data) // CHUNKS))
    chunks = array("I", (zlib.crc32(data[i : i + chunk]) for i in range(0, len(data), chunk)))
    return BlockDetail(
        skeleton, (kinds[0], kinds[1], kinds[2], kinds[3]), tokens, overflow, chunk, chunks, len(data)
    )


def char_offset(data: bytes, offset: int) -> int:
    """The character index of byte ``offset`` of UTF-8 ``data`` (moved back to a character start)."""
    while 0 < offset < len(data) and data[offset] & 0xC0 == 0x80:
        offset -= 1
    return len(data[:offset].decode("utf-8", "surrogatepass"))


def _first_chunk(prev: BlockDetail, cur: BlockDetail, data: bytes) -> int:
    """Byte offset where ``data`` (the current text) starts to differ, to chunk precision."""
    if prev.chunk != cur.chunk:  # the length changed enough to change the chunk size: compare afresh
        chunks = array("I", (zlib.crc32(data[i : i + prev.chunk]) for i in range(0, len(data), prev.chunk)))
    else:
        chunks = cur.chunks
    for i, (a, b) in enumerate(zip(prev.chunks, chunks, strict=False)):
        if a != b:
            return i * prev.chunk
    return min(len(prev.chunks), len(chunks)) * prev.chunk


def describe_block_change(prev: BlockDetail, text: str, cur: BlockDetail | None = None) -> str:
    """Where ``text`` differs from the block ``prev`` describes, e.g. ``changed at char 2,184 (digit
    run, timestamp-like)`` or ``changed near char 1,024 (wording)``; never any of either text."""
    data = encode(text)
    cur = cur or block_detail(text)
    if prev.skeleton == cur.skeleton:
        for i, (a, b) in enumerate(zip(prev.tokens, cur.tokens, strict=False)):
            if a != b:
                match = iter_tokens(data)[i]
                kind = KIND_WORDS[match.lastgroup or "number"]
                return f"changed at char {char_offset(data, match.start()):,} ({kind})"
        if prev.overflow != cur.overflow:
            at = char_offset(data, _first_chunk(prev, cur, data))
            return f"changed near char {at:,} (a digit run or id past the first {MAX_TOKENS})"
        return "changed (same text, other fields)"
    at = char_offset(data, min(_first_chunk(prev, cur, data), len(data)))
    grew = f", {prev.size:,} → {cur.size:,} bytes" if prev.size != cur.size else ""
    return f"changed near char {at:,} (wording{grew})"
