"""A lean fake Messages API for benchmarks: raw asyncio, fixed answers, no state, no validation.

It shares a core with the load generator, so it must cost far less per request than what is measured
(``sidecar.testing.fake_upstream`` is faithful but costs several times more; see bench/README.md).

Every request gets the answer to ``POST /v1/messages``: a fixed Messages JSON with usage, or — when
the body contains ``"stream":true`` — a fixed SSE stream (chunked): ``message_start`` at first byte,
then ``--deltas`` text deltas ``--delta-interval-ms`` apart, then the closing events. First byte comes
after ``--ttfb-ms`` (or the request's ``x-bench-ttfb-ms`` header). HTTP/1.1 keep-alive, requests with
``Content-Length`` bodies, no pipelining. The first stdout line is the bound URL::

    python bench/fast_upstream.py --port 0 --ttfb-ms 50 --deltas 10 --delta-interval-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

_ANSWER_TEXT = "I'm sorry about the missing atlas. I'll check order BK-48213 now."


def _message(final: bool) -> dict[str, object]:
    """The Messages object: complete (JSON answer) or as in ``message_start`` (no content yet)."""
    usage = {
        "input_tokens": 612,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 21 if final else 1,
        "service_tier": "standard",
    }
    return {
        "id": "msg_01BenchFixedAnswer000000000",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": _ANSWER_TEXT}] if final else [],
        "stop_reason": "end_turn" if final else None,
        "stop_sequence": None,
        "usage": usage,
    }


_COMMON_HEADERS = (
    "date: Tue, 10 Nov 2026 12:00:00 GMT\r\n"
    "request-id: req_01BenchFixedRequestId00000\r\n"
    "anthropic-organization-id: 00000000-0000-0000-0000-000000000000\r\n"
    "anthropic-ratelimit-requests-limit: 4000\r\n"
    "anthropic-ratelimit-requests-remaining: 3999\r\n"
    "anthropic-ratelimit-requests-reset: 2026-11-10T12:00:01Z\r\n"
    "anthropic-ratelimit-input-tokens-limit: 2000000\r\n"
    "anthropic-ratelimit-input-tokens-remaining: 1999000\r\n"
    "anthropic-ratelimit-output-tokens-limit: 400000\r\n"
    "anthropic-ratelimit-output-tokens-remaining: 399000\r\n"
)


def _sse(event: str, data: dict[str, object]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def json_answer() -> bytes:
    """The complete non-streaming HTTP response."""
    body = json.dumps(_message(final=True), separators=(",", ":")).encode()
    head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + _COMMON_HEADERS
    return head.encode() + b"content-length: %d\r\n\r\n" % len(body) + body


def stream_parts(deltas: int) -> tuple[bytes, list[bytes], bytes]:
    """(head + first events, one chunk per text delta, closing events + last chunk) of the SSE answer."""
    start = _message(final=False)
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
        + _COMMON_HEADERS
        + "transfer-encoding: chunked\r\n\r\n"
    ).encode()
    first = (
        _sse("message_start", {"type": "message_start", "message": start})
        + _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        + _sse("ping", {"type": "ping"})
    )
    middle = [
        _chunk(
            _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f" word{i}"},
                },
            )
        )
        for i in range(deltas)
    ]
    final_usage = {"output_tokens": 21}
    end = (
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": final_usage,
            },
        )
        + _sse("message_stop", {"type": "message_stop"})
    )
    return head + _chunk(first), middle, _chunk(end) + b"0\r\n\r\n"


@dataclass(frozen=True)
class Answers:
    ttfb_s: float
    interval_s: float
    json: bytes
    stream_first: bytes
    stream_middle: list[bytes]
    stream_last: bytes


def _header_int(head: bytes, name: bytes, default: int) -> int:
    """The integer value of header ``name`` (lower-case, with its leading CRLF) in ``head``."""
    at = head.find(name)
    if at < 0:
        return default
    start = at + len(name)
    try:
        return int(head[start : head.find(b"\r\n", start)].strip())
    except ValueError:
        return default


class _Connection(asyncio.Protocol):
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()  # strong references while streams run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transport is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end]).lower() + b"\r\n"
            total = end + 4 + _header_int(head, b"\r\ncontent-length:", 0)
            if len(self.buf) < total:
                return
            stream = b'"stream":true' in self.buf[end:total] or b'"stream": true' in self.buf[end:total]
            del self.buf[:total]
            ttfb_ms = _header_int(head, b"\r\nx-bench-ttfb-ms:", round(self.answers.ttfb_s * 1000))
            self._answer(stream, ttfb_ms / 1000.0)

    def _answer(self, stream: bool, ttfb_s: float) -> None:
        if stream:
            task = asyncio.ensure_future(self._stream(ttfb_s))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif ttfb_s > 0:
            asyncio.get_running_loop().call_later(ttfb_s, self._write, self.answers.json)
        else:
            self._write(self.answers.json)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def _stream(self, ttfb_s: float) -> None:
        a = self.answers
        if ttfb_s > 0:
            await asyncio.sleep(ttfb_s)
        self._write(a.stream_first)
        for part in a.stream_middle:
            if a.interval_s > 0:
                await asyncio.sleep(a.interval_s)
            self._write(part)
        self._write(a.stream_last)


def _stop_on_signal(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop on SIGINT/SIGTERM, naming the sender on stderr (an unexpected stop is then traceable)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # delivered only to the waiter thread below

    def wait() -> None:
        info = signal.sigwaitinfo(signals)
        try:
            sender = Path(f"/proc/{info.si_pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            sender = "?"
        name = signal.Signals(info.si_signo).name
        print(f"fast_upstream: {name} from pid {info.si_pid} ({sender.strip()})", file=sys.stderr, flush=True)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, name="signals", daemon=True).start()


async def serve(host: str, port: int, answers: Answers) -> None:
    """Serve until SIGINT/SIGTERM; prints the URL as the first stdout line once listening."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    _stop_on_signal(loop, stop)
    sock = socket.create_server((host, port), backlog=1024)
    # asyncio re-listens with backlog=100 unless told: 200 clients connecting at once would overflow it.
    server = await loop.create_server(lambda: _Connection(answers), sock=sock, backlog=1024)
    print(f"http://{host}:{sock.getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttfb-ms", type=int, default=0, help="default delay to first byte")
    parser.add_argument("--deltas", type=int, default=10, help="text deltas per stream")
    parser.add_argument("--delta-interval-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    first, middle, last = stream_parts(args.deltas)
    answers = Answers(args.ttfb_ms / 1000, args.delta_interval_ms / 1000, json_answer(), first, middle, last)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, answers))
    except ImportError:
        asyncio.run(serve(args.host, args.port, answers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
