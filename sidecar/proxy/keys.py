"""Keys are never recorded: only a short salted fingerprint identifies one (SPEC R-PX-4)."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Sequence

from sidecar.infra.sqlite import parse_sqlite_url

Headers = Sequence[tuple[bytes, bytes]]


def key_salt(store_url: str) -> bytes:
    """A salt kept beside the embedded store, so key fingerprints are stable across restarts."""
    env = os.environ.get("SIDECAR_KEY_SALT")
    if env:
        return env.encode()
    if store_url.startswith("sqlite:///"):
        path = parse_sqlite_url(store_url).parent / ".key-salt"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            salt = secrets.token_hex(16).encode()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(salt)
            return salt
        except OSError:
            pass
    return secrets.token_hex(16).encode()


def make_fingerprinter(salt: bytes) -> Callable[[Headers], str | None]:
    """A short salted hash that identifies a key without revealing it (memoised, bounded)."""
    cache: dict[bytes, str] = {}

    def fingerprint(headers: Headers) -> str | None:
        key = None
        for name, value in headers:
            if name == b"x-api-key" or name == b"authorization":
                # One key, one fingerprint: SDK 2.x sends it as ``Bearer <key>``, older SDKs as x-api-key.
                key = value[7:].strip() if value[:7].lower() == b"bearer " else value
                break
        if not key:
            return None
        found = cache.get(key)
        if found is None:
            found = "key_" + hashlib.blake2b(key, key=salt[:64], digest_size=6).hexdigest()
            if len(cache) < 10_000:
                cache[key] = found
        return found

    return fingerprint
