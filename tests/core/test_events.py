"""Event ids: RFC 9562 UUIDv7, time-ordered, unique."""

from __future__ import annotations

import time
import uuid

from sidecar.core.events import new_event_id


def test_event_id_is_a_uuid7_carrying_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    raw = new_event_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(raw)
    assert str(parsed) == raw  # canonical lower-case 8-4-4-4-12 form
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_event_ids_are_unique_and_sort_by_creation_time_across_milliseconds() -> None:
    first = [new_event_id() for _ in range(5000)]
    time.sleep(0.002)
    later = new_event_id()
    assert len(set(first)) == len(first)
    assert all(later > e for e in first)  # string order is time order (fixed-width lower-case hex)
