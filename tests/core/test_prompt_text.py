"""Where a prompt block changed, from the previous text's detail and the current text — never its words."""

from __future__ import annotations

import uuid

import pytest

from sidecar.core.prompt_text import MAX_TOKENS, block_detail, char_offset, describe_block_change

SECRET = "Zanzibar-octopus"
BASE = f"You are the support bot of {SECRET} Ltd. Answer politely. " * 40


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        ("Now: 2026-11-20T10:00:00Z.", "Now: 2026-11-20T10:00:07Z.", "digit run, timestamp-like"),
        ("epoch 1763600000 here", "epoch 1763600042 here", "digit run, timestamp-like"),
        (f"req {uuid.UUID(int=1)} go", f"req {uuid.UUID(int=2)} go", "uuid"),
        ("trace 4bf92f3577b34da6 ok", "trace 00f067aa0ba902b7 ok", "hex id"),
        ("call number 17 of the day", "call number 18 of the day", "digit run, counter or id"),
    ],
)
def test_a_changed_token_is_named_by_kind_and_exact_position(before: str, after: str, kind: str) -> None:
    prev, text = BASE + before, BASE + after
    at = len(BASE) + next(i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b)
    token_start = len(BASE) + before.rfind(" ", 0, at - len(BASE)) + 1
    detail = describe_block_change(block_detail(prev), text)
    assert detail == f"changed at char {token_start:,} ({kind})"
    assert SECRET not in detail


def test_positions_count_characters_not_bytes() -> None:
    prev = "Café crème. Über alles. Now 10:00."
    text = "Café crème. Über alles. Now 10:07."
    assert describe_block_change(block_detail(prev), text) == (
        f"changed at char {text.index('10:'):,} (digit run, timestamp-like)"
    )
    data = text.encode()
    assert char_offset(data, data.index(b"10:")) == text.index("10:")
    assert char_offset(data, 4) == 3  # inside "é": moved back to its start


def test_a_reworded_block_is_located_to_a_chunk() -> None:
    prev = BASE + "Be nice."
    text = BASE.replace("politely", "kindly!!", 30) + "Be nice."
    first = text.index("kindly")
    detail = describe_block_change(block_detail(prev), text)
    assert detail.startswith("changed near char ") and detail.endswith("(wording)")
    near = int(detail.removeprefix("changed near char ").split(" ")[0].replace(",", ""))
    assert near <= first < near + block_detail(prev).chunk  # the chunk that holds the first difference
    assert SECRET not in detail and "kindly" not in detail
    grown = describe_block_change(block_detail(prev), prev + " And more.")
    assert grown.endswith(f"(wording, {len(prev):,} → {len(prev) + 10:,} bytes)")


def test_changes_past_the_hashed_tokens_and_no_change() -> None:
    many = " ".join(str(i) for i in range(MAX_TOKENS + 5))
    later = many[: -len(str(MAX_TOKENS + 4))] + "999"
    detail = describe_block_change(block_detail(many), later)
    assert detail.startswith("changed near char ") and f"past the first {MAX_TOKENS}" in detail
    assert describe_block_change(block_detail(BASE), BASE) == "changed (same text, other fields)"
