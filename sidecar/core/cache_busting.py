"""Cache-busting detection (SPEC R-PC-2): an app whose system prompt changes on most calls.

A prompt that embeds the time, a request id or a counter gets a new hash on every call, so its cache
entries are written and never read. ``system_shape`` reduces a request's ``system`` to two values that
hold no prompt text: its hash (the same as ``RequestInfo.system_hash``) and a *shape* — a hash of the
text with timestamp-like runs, uuids, hex ids and digit runs masked, plus one hash of the values of each
kind. When the hash changes but the masked text does not, the kinds whose values changed say what
busts the cache. On the request path the shape comes from the cache diagnosis's per-block details
(:func:`shape_of_details`), computed once per distinct block text. ``CacheBustingDetector`` keeps, per
app, a window of calls and reports when the share of calls with a new prompt crosses the threshold.
Pure: no clock, no I/O, bounded memory.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from sidecar.core.prompt_text import (
    KINDS,
    PLACEHOLDER,
    TOKEN,
    TOKEN_BYTES,
    BlockDetail,
    encode,
    token_lines,
)

_TOKEN = TOKEN  # the names the tests and older callers use
_TOKEN_BYTES = TOKEN_BYTES
KIND_NAMES = {
    "timestamp": "timestamp-like digit run",
    "uuid": "uuid",
    "hex": "hex id",
    "number": "digit run (counter or id)",
}
WORDING = "wording"  # the text changed beyond ids and numbers
_PLACEHOLDER = PLACEHOLDER
_MAX_LISTED = 5


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def system_text(system: object) -> str | None:
    """The system prompt's text, markers ignored; blocks joined by U+001E (as ``sansio.request``)."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        parts = [b.get("text") for b in system if isinstance(b, dict)]
        return "\x1e".join(p for p in parts if isinstance(p, str))
    return None


def shape_of(text: str) -> str:
    """``skeleton.timestamp.uuid.hex.number``: hashes of the masked text and of each kind's values.

    Costs a hash of the text plus a regex pass over the lines holding a digit or a weekday name
    (about 0.5 ms for 100 kB of prose; up to ~12 ms when every line holds numbers, or for one long line).
    """
    data = encode(text)
    skeleton = hashlib.blake2b(digest_size=8)
    values = {kind: hashlib.blake2b(digest_size=8) for kind in KINDS}
    pos = 0
    for start, end in token_lines(data):
        for match in _TOKEN_BYTES.finditer(data, start, end):
            kind = match.lastgroup or "number"
            skeleton.update(data[pos : match.start()])
            skeleton.update(_PLACEHOLDER[kind])
            values[kind].update(match.group() + b"\x1f")
            pos = match.end()
    skeleton.update(data[pos:])
    return ".".join([skeleton.hexdigest(), *(values[kind].hexdigest() for kind in KINDS)])


def shape_of_details(details: Sequence[BlockDetail]) -> str:
    """A shape (as :func:`shape_of`'s, comparable with :func:`changed_kinds`) built from the per-block
    details the cache diagnosis already keeps, so a prompt is scanned once per call at most."""
    skeleton, values = 0, [0, 0, 0, 0]
    for d in details:
        skeleton = zlib.crc32(d.skeleton.to_bytes(4, "big") + b"\x1e", skeleton)
        values = [zlib.crc32(v.to_bytes(4, "big"), acc) for v, acc in zip(d.kinds, values, strict=True)]
    return ".".join(f"{x:08x}" for x in (skeleton, *values))


def shape_of_body(body: bytes) -> str | None:
    """The shape of a Messages request's system prompt, or ``None`` (no system text, not JSON)."""
    try:
        doc = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    text = system_text(doc.get("system")) if isinstance(doc, dict) else None
    return shape_of(text) if text else None


def system_shape(system: object) -> tuple[str | None, str | None]:
    """``(hash, shape)`` of a request's ``system`` value; ``(None, None)`` when it has no text.

    The hash equals ``sidecar.sansio.request.inspect_body(...).system_hash`` for the same body.
    """
    text = system_text(system)
    if not text:
        return None, None
    return _digest(encode(text)), shape_of(text)


def changed_kinds(prev_shape: str, shape: str) -> str:
    """What differs between two shapes: kinds joined by ``+`` (e.g. ``timestamp+uuid``) or ``wording``."""
    a, b = prev_shape.split("."), shape.split(".")
    if len(a) != len(KINDS) + 1 or len(b) != len(KINDS) + 1 or a[0] != b[0]:
        return WORDING
    kinds = [kind for kind, x, y in zip(KINDS, a[1:], b[1:], strict=True) if x != y]
    return "+".join(kinds) if kinds else WORDING


def describe_kinds(kinds: str) -> str:
    """Human words for ``changed_kinds`` output, e.g. ``timestamp-like digit run and uuid``."""
    if kinds == WORDING:
        return "wording of the system prompt"
    return " and ".join(KIND_NAMES.get(k, k) for k in kinds.split("+"))


def _skeleton(text: str) -> str:
    return _TOKEN.sub(lambda m: _PLACEHOLDER[m.lastgroup or "number"].decode(), text)


def describe_change(prev_text: str, text: str) -> str:
    """Where two prompts differ, by kind, position and length — never any of their text.

    E.g. ``timestamp-like digit run at char 17 (length 20)``, ``wording changed at char 120``, or
    ``no change``. Positions are character offsets in ``text``.
    """
    if prev_text == text:
        return "no change"
    if _skeleton(prev_text) != _skeleton(text):
        at = next((i for i, (x, y) in enumerate(zip(prev_text, text, strict=False)) if x != y), None)
        return f"wording changed at char {min(len(prev_text), len(text)) if at is None else at}"
    pairs = zip(_TOKEN.finditer(prev_text), _TOKEN.finditer(text), strict=False)
    diffs = [
        f"{KIND_NAMES[b.lastgroup or 'number']} at char {b.start()} (length {len(b.group())})"
        for a, b in pairs
        if a.group() != b.group()
    ]
    more = len(diffs) - _MAX_LISTED
    return "; ".join(diffs[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class BustingVerdict:
    """A change of an app's state; ``change`` names the most frequent kind of change in the window."""

    app: str
    busting: bool
    ratio: float
    calls: int
    change: str

    def message(self) -> str:
        """A log line naming the app and what changed; it holds no prompt text."""
        if not self.busting:
            return (
                f"prompt cache busting stopped for app {self.app!r}: "
                f"{self.ratio:.0%} of the last {self.calls} calls changed the system prompt"
            )
        return (
            f"prompt cache busting in app {self.app!r}: {self.ratio:.0%} of the last {self.calls} calls "
            f"sent a new system prompt; what changes: {self.change} — cached prefixes are written and "
            "never read; move volatile values out of the system prompt (e.g. into the last user message)"
        )


class _AppState:
    __slots__ = ("busting", "changed", "recent", "window")

    def __init__(self, window: int) -> None:
        self.recent: OrderedDict[str, str | None] = OrderedDict()  # hash -> shape, least recent first
        self.window: deque[str | None] = deque(maxlen=window)  # per call: None = known prompt, else kind
        self.changed = 0  # entries of ``window`` that are not None, kept as calls come and go
        self.busting = False

    def push(self, kind: str | None) -> None:
        window = self.window
        if len(window) == window.maxlen and window[0] is not None:
            self.changed -= 1  # the oldest entry falls out on append
        window.append(kind)
        if kind is not None:
            self.changed += 1


class CacheBustingDetector:
    """Per app, the share of calls whose system prompt is new; flags apps above ``threshold``.

    A prompt is *new* when its hash is not among the app's ``recent`` distinct prompts — not merely
    different from the previous call's, so that an app alternating between a few stable prompts (an
    agent and its sub-agents) is not flagged. An app is flagged once it has ``min_calls`` calls in its
    window and the share exceeds ``threshold``; it is cleared when the share falls to half the threshold
    (hysteresis, so the warning is not repeated on every call). At most ``max_apps`` apps are tracked;
    the least recently seen is forgotten first. Not thread-safe: call it from one thread.
    """

    def __init__(
        self,
        window: int = 50,
        threshold: float = 0.5,
        min_calls: int = 10,
        max_apps: int = 1000,
        *,
        recent: int = 8,
    ) -> None:
        self._window = window
        self._threshold = threshold
        self._min_calls = min_calls
        self._max_apps = max_apps
        self._recent = recent
        self._apps: OrderedDict[str, _AppState] = OrderedDict()

    def needs_shape(self, app: str, system_hash: str | None) -> bool:
        """Whether :meth:`observe` will use a shape for this call: only for a prompt new to the app
        (the app's first prompt included, kept to compare later ones with).

        Computing a shape costs a regex pass over the prompt's lines with digits; skip it otherwise.
        """
        if system_hash is None:
            return False
        state = self._apps.get(app)
        return state is None or system_hash not in state.recent

    def observe(self, app: str, system_hash: str | None, system_shape: str | None) -> BustingVerdict | None:
        """Record one call; return a verdict only when the app starts or stops busting (log it once).

        ``system_shape`` may be ``None`` when :meth:`needs_shape` said it is not needed; for a new
        prompt without one the change counts as ``wording``.
        """
        if system_hash is None:
            return None
        state = self._apps.get(app)
        if state is None:
            if len(self._apps) >= self._max_apps:
                self._apps.popitem(last=False)
            state = self._apps[app] = _AppState(self._window)
            state.recent[system_hash] = system_shape
            return None
        self._apps.move_to_end(app)
        if system_hash in state.recent:
            state.recent.move_to_end(system_hash)
            state.push(None)
        else:
            state.push(self._kind(state, system_shape))
            state.recent[system_hash] = system_shape
            if len(state.recent) > self._recent:
                state.recent.popitem(last=False)
        return self._update(app, state)

    def _kind(self, state: _AppState, shape: str | None) -> str:
        if shape is None:
            return WORDING
        for prev in reversed(state.recent.values()):
            if prev is not None and (kind := changed_kinds(prev, shape)) != WORDING:
                return kind
        return WORDING

    def _update(self, app: str, state: _AppState) -> BustingVerdict | None:
        calls = len(state.window)
        ratio = self._ratio(state)
        was = state.busting
        if not was and calls >= self._min_calls and ratio > self._threshold:
            state.busting = True
        elif was and ratio <= self._threshold / 2:
            state.busting = False
        if state.busting == was:
            return None
        kinds = Counter(k for k in state.window if k is not None)
        change = describe_kinds(kinds.most_common(1)[0][0]) if kinds else "nothing"
        return BustingVerdict(app, state.busting, ratio, calls, change)

    @staticmethod
    def _ratio(state: _AppState) -> float:
        calls = len(state.window)
        return state.changed / calls if calls else 0.0

    def busting(self, app: str) -> bool:
        state = self._apps.get(app)
        return state is not None and state.busting

    def ratio(self, app: str) -> float:
        """The share of the app's recent calls (its window) that sent a new system prompt."""
        state = self._apps.get(app)
        return 0.0 if state is None else self._ratio(state)

    def apps(self) -> tuple[str, ...]:
        """The apps tracked now, least recently seen first."""
        return tuple(self._apps)
