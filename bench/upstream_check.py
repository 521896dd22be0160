"""Is a fake upstream lean enough to share a core with the load generator? Measures req/s and CPU µs/req.

Runs each upstream pinned to core 1 and wrk (50 connections, JSON POSTs) on core 0: the project's
faithful ``sidecar.testing.fake_upstream`` and the bench's ``fast_upstream.py``. In the bench the
upstream shares core 0 with the load generator, so it should cost a small fraction of what the proxy
under test costs per request (the sidecar: several hundred µs)::

    python bench/upstream_check.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import wrk_driver
from procs import LOADGEN_CORE, PROXY_CORE, Processes, cpu_seconds, pinned

BENCH_DIR = Path(__file__).resolve().parent
SECONDS = 4


def measure(procs: Processes, work: Path, name: str, argv: list[str]) -> dict[str, float]:
    server = procs.start(name, pinned(PROXY_CORE, argv), stdout_pipe=True)
    url = server.readline(timeout_s=30) + "/v1/messages"
    script = work / "post.lua"
    script.write_text(wrk_driver.lua_script(0))
    warm = procs.start(f"{name}-warm", pinned(LOADGEN_CORE, wrk_driver.command(url, str(script), 50, 1)))
    warm.popen.wait(60)
    cpu0 = cpu_seconds(server.pid)
    wrk = procs.start(
        f"{name}-wrk", pinned(LOADGEN_CORE, wrk_driver.command(url, str(script), 50, SECONDS)), True
    )
    out, _ = wrk.popen.communicate(timeout=SECONDS + 60)
    cpu = cpu_seconds(server.pid) - cpu0
    procs.stop(server)
    result = wrk_driver.parse(out.decode())
    requests = result["requests"]
    assert isinstance(requests, int) and requests > 0, f"{name}: no requests completed"
    return {"rps": float(str(result["rps"])), "cpu_us_per_req": round(cpu / requests * 1e6, 1)}


def main() -> int:
    if not wrk_driver.available():
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    py = sys.executable
    upstreams = {
        "sidecar.testing.fake_upstream": [
            py,
            "-m",
            "sidecar.testing.fake_upstream",
            "--port",
            "0",
            "--no-auth",
        ],
        "bench/fast_upstream.py": [py, str(BENCH_DIR / "fast_upstream.py"), "--port", "0"],
    }
    print("| upstream (one core, wrk -c50) | req/s | CPU µs / request |\n|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="upstream-check-") as tmp, Processes(Path(tmp)) as procs:
        for name, argv in upstreams.items():
            r = measure(procs, Path(tmp), name.replace("/", "_"), argv)
            print(f"| {name} | {r['rps']:,.0f} | {r['cpu_us_per_req']:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
