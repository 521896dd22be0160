"""What the fake model answers: deterministic content derived from the request.

Rules (the contract tests rely on):

* ``tools`` present, ``tool_choice`` not ``none``, and the last user message has no ``tool_result``:
  one short text block, then ``tool_calls`` ``tool_use`` blocks cycling through the tools
  (``tool_choice: {"type": "tool"}`` starts with the named one); ``stop_reason`` is ``tool_use``.
  The input fills the schema's ``required`` properties with simple values (``"fake"``, ``1``, ``true``…).
* Otherwise a text answer, ``stop_reason`` ``end_turn`` — or ``max_tokens`` when ``max_tokens`` is
  below the answer's word count, in which case the text is cut to ``max_tokens`` words.
* ``thinking`` of type ``enabled`` or ``adaptive`` adds a leading thinking block with a signature.
* Output tokens = whitespace-separated words of the text, thinking and tool-input JSON produced.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_FILLER = ("and", "a", "few", "more", "words")


def digest(*parts: str | bytes, length: int = 24) -> str:
    """A stable id fragment (base58-like) from the SHA-256 of ``parts``."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    n = int.from_bytes(h.digest(), "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Block:
    """One content block of the answer. ``pieces`` is how the stream splits its text or tool JSON."""

    type: str  # "text" | "thinking" | "tool_use"
    pieces: tuple[str, ...]
    signature: str = ""
    tool_id: str = ""
    tool_name: str = ""

    @property
    def full_text(self) -> str:
        return "".join(self.pieces)

    def final_json(self) -> dict[str, Any]:
        """The block as it appears in a non-streamed ``Message.content``."""
        if self.type == "thinking":
            return {"type": "thinking", "thinking": self.full_text, "signature": self.signature}
        if self.type == "tool_use":
            tool_input = json.loads(self.full_text)
            return {"type": "tool_use", "id": self.tool_id, "name": self.tool_name, "input": tool_input}
        return {"type": "text", "text": self.full_text}


@dataclass(frozen=True, slots=True)
class Answer:
    blocks: tuple[Block, ...]
    stop_reason: str
    output_tokens: int
    thinking_tokens: int


def split_words(words: Sequence[str], parts: int) -> tuple[str, ...]:
    """Join ``words`` with spaces, cut into ``parts`` pieces of near-equal word counts."""
    parts = max(1, min(parts, len(words)))
    size, extra = divmod(len(words), parts)
    pieces, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        pieces.append((" " if i else "") + " ".join(words[start:end]))
        start = end
    return tuple(pieces)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _last_user(messages: Sequence[Any]) -> Any:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message.get("content")
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _sample(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "fake"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    samples = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}, "null": None}
    return samples.get(str(schema.get("type")), "fake")


def _tool_input_json(tool: Mapping[str, Any]) -> str:
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        return "{}"
    props = _as_dict(schema.get("properties"))
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    return json.dumps({name: _sample(props.get(name)) for name in required})


def _tool_blocks(body: Mapping[str, Any], seed: str, count: int) -> list[Block]:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = _as_dict(body.get("tool_choice"))
    names = [str(t.get("name", "tool")) for t in tools]
    start = names.index(choice["name"]) if choice.get("type") == "tool" and choice.get("name") in names else 0
    blocks = []
    for i in range(max(1, count)):
        tool = tools[(start + i) % len(tools)]
        text = _tool_input_json(tool)
        half = len(text) // 2
        pieces = ("", text) if len(text) <= 2 else ("", text[:half], text[half:])
        tool_id = "toolu_01" + digest(seed, "tool", str(i), length=22)
        blocks.append(Block("tool_use", pieces, tool_id=tool_id, tool_name=str(tool.get("name", "tool"))))
    return blocks


def build_answer(body: Mapping[str, Any], seed: str, *, deltas: int, tool_calls: int = 1) -> Answer:
    """The deterministic answer to a validated Messages request body; ``seed`` makes the ids."""
    messages = body.get("messages") or []
    last_user = _last_user(messages)
    snippet = _text_of(last_user).split()[:8] or ["nothing"]
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = _as_dict(body.get("tool_choice"))
    # "any"/"tool" force a tool call even right after a tool_result, as the real API does.
    forced = choice.get("type") in ("any", "tool")
    calls_tools = bool(tools) and choice.get("type") != "none" and (forced or not _has_tool_result(last_user))
    blocks: list[Block] = []
    thinking = body.get("thinking")
    thinking_words = 0
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        words = ["The", "user", "asks", "about", *snippet[:4], "so", "a", "short", "answer", "will", "do."]
        signature = base64.b64encode(hashlib.sha256(f"{seed}:thinking".encode()).digest()).decode()
        blocks.append(Block("thinking", split_words(words, 2), signature=signature))
        thinking_words = len(words)
    stop_reason = "end_turn"
    if calls_tools:
        tool_blocks = _tool_blocks(body, seed, tool_calls)
        names = sorted({b.tool_name for b in tool_blocks})
        words = ["I", "will", "call", "the", *names, "tool" if len(names) == 1 else "tools"]
        blocks.append(Block("text", split_words(words, deltas)))
        blocks.extend(tool_blocks)
        stop_reason = "tool_use"
    else:
        prefix = ["Tool", "result", "received:"] if _has_tool_result(last_user) else ["Fake", "reply", "to:"]
        words = [*prefix, *snippet]
        words += [_FILLER[i % len(_FILLER)] for i in range(max(0, deltas - len(words)))]
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and 0 <= max_tokens < len(words):
            words, stop_reason = words[:max_tokens], "max_tokens"
        if words:
            blocks.append(Block("text", split_words(words, deltas)))
    output = sum(len(b.full_text.split()) for b in blocks)
    return Answer(tuple(blocks), stop_reason, output, thinking_words)
