"""Listening sockets bound before anything is declared ready, with one clear line when a port is taken.

Every listener (proxy, admin, fleet) binds through :func:`bind_tcp` first and hands the socket to its
server afterwards, so a taken port stops the start with a :class:`ListenError` naming the setting —
never a "ready" line followed by ``[Errno 98]``.
"""

from __future__ import annotations

import errno
import socket

from sidecar.errors import ConfigError

_REASONS = {
    errno.EADDRINUSE: "address already in use",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "cannot assign requested address (not an address of this machine)",
}
IN_USE_ADVICE = "another process listens there: stop it or choose another port"


class ListenError(ConfigError):
    """A listener's address cannot be bound; the message starts with the setting that chose it."""


def bind_tcp(host: str, port: int, setting: str, in_use: str = IN_USE_ADVICE) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0 = any free port), not yet listening.

    ``setting`` names what chose the port (e.g. ``--port / SIDECAR_PORT``); it starts the one-line
    ``ListenError`` raised when the address cannot be bound, and ``in_use`` says what to do when the
    port is taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Like uvicorn and asyncio: a restarted sidecar may bind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        if exc.errno == errno.EADDRINUSE:
            reason += f" ({in_use})"
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(f"{setting}: cannot listen on {where}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def http_url(host: str, port: int, path: str = "", *, local: bool = False) -> str:
    """``http://host:port/path``; with ``local``, a wildcard host becomes loopback (a link to click)."""
    if local and host in ("0.0.0.0", "", "::"):
        host = "::1" if host == "::" else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"
