"""Fingerprints of a Messages request's cacheable prefix (SPEC R-CD-1): hashes, lengths and positions only.

A fingerprint holds, in the API's prefix order, the model; a hash per tool (with its name); a hash and a
:class:`~sidecar.core.prompt_text.BlockDetail` per system block; a hash per message; and the cache
breakpoints (position and TTL). ``cache_control`` markers never count in a hash: moving a marker does not
change the prompt, only where entries are written. ``sidecar.sansio.prompt_prefix`` computes them from a
request; :mod:`sidecar.core.cache_diagnosis` compares two.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass

from sidecar.core.prompt_text import BlockDetail, block_detail

TOOLS, SYSTEM, MESSAGES = 0, 1, 2


@dataclass(frozen=True, slots=True, order=True)
class Breakpoint:
    """A ``cache_control`` marker: ``section`` (TOOLS, SYSTEM, MESSAGES), the index in it, the content
    block inside a message (0 elsewhere) and the TTL (``5m`` | ``1h``)."""

    section: int
    index: int
    block: int
    ttl: str


@dataclass(frozen=True, slots=True)
class SystemBlock:
    key: int  # hash of the text (or of the canonical JSON of a block that is not plain text)
    detail: BlockDetail | None  # None for blocks without text


@dataclass(frozen=True, slots=True)
class Region:
    """A list summarised: per-item crc32s and the crc32/length of ``[i0,i1,…`` (``]`` included when
    ``closed``) as ``orjson`` writes it."""

    hashes: array[int]
    crc: int
    length: int

    @property
    def count(self) -> int:
        return len(self.hashes)


@dataclass(frozen=True, slots=True)
class PromptFingerprint:
    model: str | None
    tool_names: tuple[str, ...]
    tools: Region | None  # None: not serialisable
    system: tuple[SystemBlock, ...]
    messages: Region | None
    breakpoints: tuple[Breakpoint, ...]  # prefix order

    @property
    def last_breakpoint(self) -> Breakpoint | None:
        return self.breakpoints[-1] if self.breakpoints else None


class DetailCache:
    """Block details by text hash, shared by every session (the same system prompt is scanned once).
    Bounded LRU; not thread-safe."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._items: OrderedDict[tuple[int, int], BlockDetail] = OrderedDict()

    def get(self, key: int, text: str) -> BlockDetail:
        ident = (key, len(text))
        found = self._items.get(ident)
        if found is not None:
            self._items.move_to_end(ident)
            return found
        found = self._items[ident] = block_detail(text)
        if len(self._items) > self._max:
            self._items.popitem(last=False)
        return found
