"""Non-streaming load with ``wrk`` (one thread, closed loop): the Lua POST script and its result line.

wrk costs a few µs per request where an asyncio client costs ~100, so on a shared core it leaves the
proxy as the bottleneck. Its durations are whole seconds.
"""

from __future__ import annotations

import json
import shutil

from workload import request_body, request_headers

_MARK = "WRKJSON "
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"errors":%d,"p50":%.1f,"p90":%.1f,"p99":%.1f,"max":%.1f,"mean":%.1f}\\n',
    "MARK", summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


# With a delayed upstream, every connection's first request waits a random part of one upstream delay.
# Without it all connections of a fresh wrk run fire at once and their answers come back in lockstep
# waves; the proxy works through each wave in turn until the waves spread, which takes about half a
# second and, in a 6 s phase, made up most of the p99 (per-request timestamps showed every slow call in
# the first 0.7 s). The asyncio load generator measures after an in-run warm-up and needs no stagger.
_STAGGER = """
local started = 0
delay = function()
  if started < CONNECTIONS then
    started = started + 1
    return math.random(0, SPREAD - 1)
  end
  return 0
end
"""


def lua_script(ttfb_ms: int, headers: dict[str, str] | None = None, connections: int = 0) -> str:
    """A wrk script that POSTs the bench's JSON Messages request and prints a JSON result line;
    ``headers`` override the workload's (e.g. a proxy's own key in ``x-api-key``). With ``ttfb_ms`` > 0
    and ``connections``, each connection's first request starts at a random point of one upstream delay."""
    body = request_body(stream=False).decode()
    assert "]==]" not in body
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body}]==]"]
    merged = {**request_headers(ttfb_ms), **{k.lower(): v for k, v in (headers or {}).items()}}
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in merged.items()]
    stagger = ""
    if ttfb_ms > 0 and connections > 0:
        stagger = _STAGGER.replace("CONNECTIONS", str(connections)).replace("SPREAD", str(ttfb_ms))
    return "\n".join(lines) + stagger + _DONE.replace('"MARK"', json.dumps(_MARK))


def command(url: str, script_path: str, connections: int, seconds: int) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, seconds)}s",
        "--timeout",
        "30s",
        "-s",
        script_path,
        url,
    ]


def parse(stdout: str) -> dict[str, object]:
    """wrk's output → the same result shape as ``loadgen.py`` (non-2xx answers count as errors)."""
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            raw = json.loads(line[len(_MARK) :])
            break
    else:
        raise ValueError(f"no result line in wrk output: {stdout[-500:]!r}")
    seconds = raw["duration_us"] / 1e6
    latency = {k: round(raw[k] / 1000.0, 3) for k in ("p50", "p90", "p99", "max", "mean")}
    return {
        "requests": raw["requests"],
        "errors": raw["errors"],
        "duration_s": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "latency_ms": latency,
        "ttfb_ms": None,
    }
