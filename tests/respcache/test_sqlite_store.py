"""The embedded entry store: a private file beside the events, bounded by bytes, least recently used out."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from sidecar.respcache.backend import StoreError
from sidecar.respcache.entry import JSON, Entry
from sidecar.respcache.sqlite_store import FILE_NAME, SQLiteEntries


def entry(
    body: bytes = b'{"type":"message"}', *, app: str = "a", at: float = 1000.0, ttl: float = 60
) -> Entry:
    return Entry(
        JSON, 200, b"application/json", body, app, at, at + ttl, 0.01, "claude-sonnet-4-5", "end_turn"
    )


async def opened(tmp_path: Path, max_bytes: int = 1_000_000) -> SQLiteEntries:
    store = SQLiteEntries(tmp_path / "data" / FILE_NAME, max_bytes)
    await store.open()
    return store


async def test_an_entry_comes_back_until_it_expires(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    stored = entry()
    await store.put(b"k1", stored)
    assert await store.get(b"k1", 1030.0) == stored
    assert await store.get(b"k2", 1030.0) is None
    assert store.stored_bytes() == len(stored.encode())
    assert await store.get(b"k1", 1060.0) is None  # expired: gone, and no longer counted
    assert store.stored_bytes() == 0
    await store.close()


async def test_the_file_is_private_to_its_owner(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await store.put(b"k", entry())
    files = [store.path, store.path.with_name(FILE_NAME + "-wal"), store.path.with_name(FILE_NAME + "-shm")]
    for path in files:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    await store.close()


async def test_least_recently_used_entries_go_first_past_the_byte_bound(tmp_path: Path) -> None:
    size = len(entry(b"x" * 1000).encode())
    store = await opened(tmp_path, max_bytes=3 * size)
    for i, at in enumerate((1000.0, 1010.0, 1020.0)):
        await store.put(b"k%d" % i, entry(b"x" * 1000, at=at, ttl=600))
    assert await store.get(b"k0", 1030.0) is not None  # k0 is now the most recently used
    await store.put(b"k3", entry(b"x" * 1000, at=1040.0, ttl=600))
    assert await store.get(b"k1", 1050.0) is None  # the least recently used went
    assert [await store.get(b"k%d" % i, 1050.0) is not None for i in (0, 2, 3)] == [True, True, True]
    assert store.stored_bytes() == 3 * size <= store.max_bytes
    await store.put(b"huge", entry(b"x" * 4 * size, at=1060.0))  # larger than the whole cache: skipped
    assert await store.get(b"huge", 1061.0) is None and store.stored_bytes() == 3 * size
    await store.close()
    again = await opened(tmp_path, max_bytes=3 * size)
    assert again.stored_bytes() == 3 * size  # the count survives a restart, and the key index
    assert await again.get(b"k3", 1050.0) is not None and await again.get(b"k1", 1050.0) is None
    await again.close()


async def test_purge_by_app_or_all_and_expiry(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await store.put(b"a1", entry(app="evals"))
    await store.put(b"a2", entry(app="evals", ttl=5))
    await store.put(b"b1", entry(app="bot"))
    assert await store.expire(1010.0) == 1
    assert await store.purge("evals") == 1
    assert await store.get(b"b1", 1010.0) is not None
    assert await store.purge(None) == 1
    assert store.stored_bytes() == 0
    assert await store.get(b"b1", 1010.0) is None
    await store.close()


async def test_a_broken_store_raises_its_own_error(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    await store.put(b"k", entry())
    other = sqlite3.connect(store.path)
    other.execute("DROP TABLE entries")
    other.close()
    with pytest.raises(StoreError):
        await store.get(b"k", 1000.0)
    with pytest.raises(StoreError):
        await store.put(b"k", entry())
    await store.close()
    with pytest.raises(StoreError):
        await store.get(b"k", 1000.0)  # closed
    blocked = SQLiteEntries(tmp_path / "a-file" / FILE_NAME, 1000)
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreError):
        await blocked.open()
