"""A failure reads the same to the client whichever upstream client met it: the lean one (Messages) or
aiohttp (an upload streamed as it arrives), against raw-socket upstreams on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from tests.conftest import API_KEY
from tests.net import free_port

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
MESSAGES_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "Hi"}],
}
UNREACHABLE = (502, "api_error", "The upstream API could not be reached.", "true")
SILENT = (504, "timeout_error", "The upstream API did not answer in time.", "true")
MakeSidecar = Callable[..., RunningSidecar]
Script = Callable[[socket.socket], None]


def fallback_opened(sidecar: RunningSidecar) -> bool:
    fallback = sidecar.sidecar.upstream.fallback
    assert fallback is not None  # the client opened with the app
    return fallback.opened


def read_request(conn: socket.socket) -> bytes:
    """One request off ``conn``: its head, then a body by content-length or to the last chunk."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")]
    length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), None)
    chunked = any(line.startswith(b"transfer-encoding:") and b"chunked" in line for line in lines)
    while (length is not None and len(body) < length) or (chunked and not body.endswith(b"0\r\n\r\n")):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data


@contextmanager
def scripted_upstream(script: Script) -> Iterator[str]:
    """A raw-socket upstream on 127.0.0.1 running ``script`` on each connection (a thread each)."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=run, args=(conn,), daemon=True).start()

    def run(conn: socket.socket) -> None:
        with conn, suppress(OSError):  # the sidecar hung up first
            script(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        server.close()


@contextmanager
def nothing_listening() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"  # the connection is refused


def hang(conn: socket.socket) -> None:
    read_request(conn)
    conn.settimeout(10)
    conn.recv(1)  # until the caller gives up and closes


def close_before_answering(conn: socket.socket) -> None:
    read_request(conn)


def cut_body_short(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"id":')


def post_messages(url: str) -> httpx.Response:
    return httpx.post(url + "/v1/messages", headers=HEADERS, json=MESSAGES_BODY, timeout=10)


def post_upload(url: str) -> httpx.Response:
    chunks = iter([b"--b\r\ncontent-disposition: form-data; ", b'name="file"\r\n\r\nhi\r\n--b--\r\n'])
    headers = {**HEADERS, "content-type": "multipart/form-data; boundary=b"}
    return httpx.post(url + "/v1/files", headers=headers, content=chunks, timeout=10)


def answer_of(resp: httpx.Response) -> tuple[int, str, str, str]:
    """Status, error type and message, and the retry hint of an answer in Anthropic's error shape."""
    doc = resp.json()
    assert doc["type"] == "error" and doc["request_id"] == resp.headers["request-id"]
    assert resp.headers["content-type"] == "application/json"
    return resp.status_code, doc["error"]["type"], doc["error"]["message"], resp.headers["x-should-retry"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [(None, UNREACHABLE), (close_before_answering, UNREACHABLE), (hang, SILENT)],
    ids=["refused", "closed-before-answering", "silent"],
)
def test_no_answer_reads_the_same_from_both_clients(
    make_sidecar: MakeSidecar, script: Script | None, expected: tuple[object, ...]
) -> None:
    with scripted_upstream(script) if script else nothing_listening() as url:
        sidecar = make_sidecar(url, upstream_timeout=0.5)
        lean = post_messages(sidecar.url)
        assert not fallback_opened(sidecar)  # the Messages call went through the lean client
        streamed = post_upload(sidecar.url)
        assert fallback_opened(sidecar)  # the upload through aiohttp
    assert answer_of(lean) == answer_of(streamed) == expected
    events = sidecar.wait_events(2)
    assert sorted(e.operation for e in events) == ["chat", "files"]
    status, error_type = expected[:2]
    assert {(e.status, e.outcome, e.error_type) for e in events} == {(status, "upstream_error", error_type)}


def received(url: str, path: str, content: Any, headers: dict[str, str]) -> tuple[int, bytes, bool]:
    """Status, the body bytes that arrived, and whether the connection ended before the body did."""
    data = b""
    with httpx.stream("POST", url + path, headers=headers, content=content, timeout=10) as resp:
        try:
            for chunk in resp.iter_raw():
                data += chunk
        except httpx.HTTPError:
            return resp.status_code, data, True
    return resp.status_code, data, False


def test_an_answer_broken_off_reads_the_same_from_both_clients(make_sidecar: MakeSidecar) -> None:
    with scripted_upstream(cut_body_short) as url:
        sidecar = make_sidecar(url)
        lean = received(sidecar.url, "/v1/messages", json.dumps(MESSAGES_BODY).encode(), HEADERS)
        upload = iter([b"--b\r\n", b"--b--\r\n"])
        form = {**HEADERS, "content-type": "multipart/form-data; boundary=b"}
        streamed = received(sidecar.url, "/v1/files", upload, form)
        assert fallback_opened(sidecar)
    # What came is relayed, then the connection ends the same abrupt way.
    assert lean == streamed == (200, b'{"id":', True)
    events = sidecar.wait_events(2)
    interrupted = (200, "upstream_error", "stream_interrupted")
    assert {(e.status, e.outcome, e.error_type) for e in events} == {interrupted}
