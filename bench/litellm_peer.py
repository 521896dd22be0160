"""LiteLLM's proxy as a measured peer: its own venv outside the repository, started offline and pinned.

LiteLLM is never a dependency of the project. ``ensure_venv`` pip-installs ``litellm[proxy]`` at the
pinned ``VERSION`` into ``~/.cache/claude-sidecar-bench/litellm-<version>`` (``$XDG_CACHE_HOME`` is
honoured) and marks it complete only once the package imports at the right version; later runs reuse
it. Delete the directory to force a fresh install.

``start`` runs ``litellm --config`` on the proxy core in a clean environment: no database, no
telemetry, the bundled model cost map (``LITELLM_LOCAL_MODEL_COST_MAP``), a master key, and its
Anthropic pass-through route (``/anthropic/...``) pointed at the bench's upstream through
``ANTHROPIC_API_BASE`` (read by ``anthropic_proxy_route`` in
``litellm/proxy/pass_through_endpoints/llm_passthrough_endpoints.py``). As in a usual deployment, the
proxy holds the upstream key (``ANTHROPIC_API_KEY``) and clients authenticate with the LiteLLM key in
``x-api-key``. ``check_forwarding`` proves that answers come from the bench's upstream.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs import PROXY_CORE, Child, Processes, free_port, pinned, wait_http_ok
from workload import request_body, request_headers

VERSION = "1.108.7"  # newest release whose ``[proxy]`` extra resolves on PyPI as of November 2026
ROUTE = "/anthropic/v1/messages"
MASTER_KEY = "sk-bench-litellm-master-key-0000"
UPSTREAM_KEY = "sk-ant-bench-litellm-upstream-0000"  # what LiteLLM sends upstream (the fake ignores it)
UPSTREAM_MESSAGE_ID = "msg_01BenchFixedAnswer000000000"  # fast_upstream.py's fixed answer
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 180.0  # a cold start imports ~700 MB of packages on one core
CHECK_DELAY_MS = 300  # the check request asks the upstream for this delay, so it must reach it
_COMPLETE = ".bench-complete"

CONFIG = """\
# LiteLLM proxy for the claude-sidecar bench: no models, only the Anthropic pass-through route.
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


class PeerUnavailable(Exception):
    """LiteLLM could not be installed, started or checked; the message is the report's reason."""


@dataclass(frozen=True)
class Install:
    venv: Path
    version: str
    install_s: float | None  # None when an earlier run's venv was reused
    size_mb: float


def venv_dir(version: str = VERSION) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "claude-sidecar-bench" / f"litellm-{version}"


def _size_mb(root: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return round(total / 2**20, 1)


def _installed_version(venv: Path) -> str | None:
    code = "import importlib.metadata as m, litellm.proxy.proxy_server; print(m.version('litellm'))"
    try:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else None


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("ERROR")]
    return lines[-1][:300] if lines else "see the log"


def ensure_venv(log_dir: Path, version: str = VERSION, venv: Path | None = None) -> Install:
    """The venv holding ``litellm[proxy]==version``: reused when complete, else (re)installed.

    Raises ``PeerUnavailable`` when the install fails; a failed install leaves nothing behind."""
    venv = venv or venv_dir(version)
    if (venv / _COMPLETE).exists() and (venv / "bin" / "litellm").exists():
        return Install(venv, version, None, _size_mb(venv))
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = log_dir / "litellm-install.log"
    started = time.monotonic()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    steps = [
        ("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
        (f"pip install litellm[proxy]=={version}", [*pip, f"litellm[proxy]=={version}"]),
    ]
    try:
        with log.open("wb") as out:
            for what, argv in steps:
                code = subprocess.run(argv, stdout=out, stderr=out, timeout=INSTALL_TIMEOUT_S).returncode
                if code != 0:
                    raise PeerUnavailable(f"{what} failed (exit {code}): {_last_error(log)}")
        found = _installed_version(venv)
        if found != version:
            raise PeerUnavailable(f"installed litellm does not import as {version} (got {found})")
    except subprocess.TimeoutExpired:
        shutil.rmtree(venv, ignore_errors=True)
        raise PeerUnavailable(f"install took more than {INSTALL_TIMEOUT_S:.0f} s") from None
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    elapsed = round(time.monotonic() - started, 1)
    (venv / _COMPLETE).write_text(f"litellm[proxy]=={version} installed in {elapsed} s\n")
    return Install(venv, version, elapsed, _size_mb(venv))


def offline_env(venv: Path, upstream_url: str, home: Path) -> dict[str, str]:
    """A clean environment: nothing of the bench's (no proxies, no database or cloud settings)."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_TELEMETRY_DISABLED": "True",
        "ANTHROPIC_API_BASE": upstream_url,
        "ANTHROPIC_API_KEY": UPSTREAM_KEY,
    }


def client_headers() -> dict[str, str]:
    """Header overrides for load generators: LiteLLM's key in place of the Anthropic one."""
    return {"x-api-key": MASTER_KEY}


def start(procs: Processes, work: Path, venv: Path, upstream_url: str) -> tuple[Child, str]:
    """Start the proxy on the proxy core and wait until it serves; returns (child, base URL)."""
    config = work / "litellm-config.yaml"
    config.write_text(CONFIG)
    home = work / "litellm-home"
    home.mkdir(exist_ok=True)
    port = free_port()
    argv = [
        str(venv / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    child = procs.start(
        "litellm", pinned(PROXY_CORE, argv), env=offline_env(venv, upstream_url, home), cwd=home
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(url + "/health/liveliness", START_TIMEOUT_S, child.alive)
    except RuntimeError as exc:
        procs.stop(child)
        tail = child.log_tail(600).strip().splitlines()
        raise PeerUnavailable(f"did not start: {exc} ({tail[-1] if tail else 'empty log'})") from None
    return child, url


def _post(url: str, stream: bool, timeout_s: float = 30.0) -> tuple[int, dict[str, str], bytes, float]:
    headers = {**request_headers(CHECK_DELAY_MS), **client_headers()}
    req = urllib.request.Request(url, data=request_body(stream), headers=headers, method="POST")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = resp.read()
            return (
                resp.status,
                {k.lower(): v for k, v in resp.headers.items()},
                body,
                time.monotonic() - started,
            )
    except urllib.error.HTTPError as exc:
        return exc.code, {}, exc.read()[:300], time.monotonic() - started


def check_forwarding(base_url: str, upstream_url: str) -> dict[str, Any]:
    """One JSON and one SSE request through the route; raises ``PeerUnavailable`` unless both answers
    are the bench upstream's own (its fixed message id) and took at least the delay asked of it."""
    out: dict[str, Any] = {}
    for stream in (False, True):
        kind = "SSE" if stream else "JSON"
        status, headers, body, took = _post(base_url + ROUTE, stream)
        if status != 200:
            raise PeerUnavailable(f"{kind} check got HTTP {status}: {body[:200]!r}")
        if stream:
            text = body.decode(errors="replace")
            ok = text.startswith("event: message_start") and UPSTREAM_MESSAGE_ID in text
            ok = ok and "event: message_stop" in text
        else:
            ok = json.loads(body).get("id") == UPSTREAM_MESSAGE_ID
        if not ok:
            raise PeerUnavailable(f"{kind} check: the answer is not the bench upstream's: {body[:200]!r}")
        if took < CHECK_DELAY_MS / 1000:
            raise PeerUnavailable(
                f"{kind} check answered in {took * 1000:.0f} ms, before the upstream's delay"
            )
        out[kind.lower()] = {"status": status, "ms": round(took * 1000, 1), "bytes": len(body)}
        out["upstream_url_seen"] = headers.get("x-litellm-model-api-base", out.get("upstream_url_seen"))
    expected = upstream_url + "/v1/messages"
    if out.get("upstream_url_seen") not in (None, expected):
        raise PeerUnavailable(f"LiteLLM says it called {out['upstream_url_seen']}, not {expected}")
    return out
