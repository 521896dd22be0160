from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sidecar.sansio.request import classify_path, inspect_body


def test_classify_paths() -> None:
    assert classify_path("/v1/messages") == "chat"
    assert classify_path("/v1/messages/count_tokens") == "count_tokens"
    assert classify_path("/v1/messages/batches/msgbatch_1/results") == "batches"
    assert classify_path("/v1/models/claude-x") == "models"
    assert classify_path("/v1/files/file_1/content") == "files"
    assert classify_path("/v1/agents") == "other"


def test_inspect_reads_model_stream_metadata_and_trailing_tool_results() -> None:
    body = {
        "model": "claude-opus-4-6",
        "max_tokens": 100,
        "stream": True,
        "system": [{"type": "text", "text": "You are helpful."}],
        "metadata": {"user_id": "u1"},
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_old", "name": "w", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_old", "content": "x"}],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_new", "name": "w", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_new", "is_error": True}],
            },
        ],
    }
    info = inspect_body(json.dumps(body).encode())
    assert info.parsed and info.model == "claude-opus-4-6" and info.stream and info.max_tokens == 100
    assert info.metadata_user_id == "u1"
    assert info.tool_results == (("toolu_new", True),)  # history is not re-counted
    assert info.system_hash is not None and info.fingerprint is not None


def test_system_hash_ignores_cache_markers_and_string_form() -> None:
    plain = inspect_body(json.dumps({"system": "Be brief.", "messages": []}).encode())
    marked = inspect_body(
        json.dumps(
            {
                "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                "messages": [],
            }
        ).encode()
    )
    other = inspect_body(json.dumps({"system": "Be long.", "messages": []}).encode())
    assert plain.system_hash == marked.system_hash != other.system_hash


def test_fingerprint_groups_turns_of_one_conversation() -> None:
    first = {"system": "S", "messages": [{"role": "user", "content": "hi"}]}
    later = {
        "system": "S",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
            {"role": "user", "content": "more"},
        ],
    }
    different = {"system": "S", "messages": [{"role": "user", "content": "bye"}]}
    fp = [inspect_body(json.dumps(d).encode()).fingerprint for d in (first, later, different)]
    assert fp[0] == fp[1] != fp[2]


def test_messages_with_system_role_do_not_confuse_the_parser() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "mid"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ]
    }
    assert inspect_body(json.dumps(body).encode()).tool_results == (("t1", False),)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    inspect_body(data)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "model",
                        "messages",
                        "system",
                        "stream",
                        "metadata",
                        "role",
                        "content",
                        "type",
                        "tool_use_id",
                        "user_id",
                        "text",
                    ]
                ),
                c,
                max_size=5,
            )
        ),
        max_leaves=30,
    )
)
def test_arbitrary_json_shapes_never_raise(doc: object) -> None:
    inspect_body(json.dumps(doc).encode())


def test_deep_nesting_does_not_raise() -> None:
    inspect_body(b"[" * 100_000 + b"]" * 100_000)


def test_inspect_doc_equals_inspect_body() -> None:
    from sidecar.sansio.request import inspect_doc, parse_object

    body = json.dumps(
        {"model": "m", "stream": True, "system": "S", "messages": [{"role": "user", "content": "x"}]}
    )
    assert inspect_doc(parse_object(body.encode())) == inspect_body(body.encode())
    assert parse_object(b"[1, 2]") is None and inspect_doc(None) == inspect_body(b"not json")
