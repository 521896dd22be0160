"""End to end on 127.0.0.1 with Debian's real Prometheus and Alertmanager: Prometheus scrapes a running
sidecar, the shipped dead-man rule fires, and Alertmanager delivers it to a local receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import require_service
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]
RULE = "ClaudeSidecarDeadManCheckDown"


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.payloads.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    require_service(path is not None, f"{name} (Debian package {package})")
    assert path is not None
    return path


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _fast_rules(path: Path) -> Path:
    """The shipped rules with `for:` shortened so the test stays bounded; expressions unchanged."""
    doc = yaml.safe_load((ROOT / "alerts" / "claude-sidecar.rules.yml").read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(doc))
    return path


def _wait(what: str, predicate: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _running(fake_url: str, tmp_path: Path) -> RunningSidecar:
    checks = [{"name": "nightly-eval", "period": "1s", "grace": "1s"}]
    settings = Settings(
        upstream_url=fake_url, store=f"sqlite:///{tmp_path}/e.db", port=0, policies={"checks": checks}
    )
    return RunningSidecar(settings).start()


def test_deadman_rule_fires_through_prometheus_and_alertmanager(fake: FakeUpstream, tmp_path: Path) -> None:
    prometheus = _binary("prometheus", "prometheus")
    alertmanager = _binary("prometheus-alertmanager", "prometheus-alertmanager")
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    sidecar = _running(fake.url, tmp_path)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        httpx.post(sidecar.url + "/sidecar/v1/checkins/nightly-eval").raise_for_status()  # up, then silence
        am_port, prom_port = free_port(), free_port()
        am_config = tmp_path / "am.yml"
        am_config.write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "hook",
                        "group_by": ["alertname"],
                        "group_wait": "1s",
                        "group_interval": "1s",
                    },
                    "receivers": [
                        {"name": "hook", "webhook_configs": [{"url": receiver.url, "send_resolved": True}]}
                    ],
                }
            )
        )
        procs.append(
            _start(
                [
                    alertmanager,
                    f"--config.file={am_config}",
                    f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ]
            )
        )
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(_fast_rules(tmp_path / "rules.yml"))],
                    "alerting": {
                        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "claude-sidecar",
                            "static_configs": [{"targets": [f"127.0.0.1:{sidecar.port}"]}],
                        }
                    ],
                }
            )
        )
        procs.append(
            _start(
                [
                    prometheus,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--rules.alert.resend-delay=1s",
                ]
            )
        )
        prom = f"http://127.0.0.1:{prom_port}"

        def scraped() -> bool:
            try:
                doc = httpx.get(prom + "/api/v1/query", params={"query": 'up{job="claude-sidecar"}'}).json()
            except (httpx.HTTPError, ValueError):  # not listening yet, or a plain-text "not ready" answer
                return False
            return any(r["value"][1] == "1" for r in doc.get("data", {}).get("result", []))

        _wait("Prometheus to scrape the sidecar", scraped, 30)

        def delivered() -> dict[str, Any] | None:
            for payload in receiver.payloads:
                for alert in payload.get("alerts", []):
                    if alert["labels"].get("alertname") == RULE and alert["status"] == "firing":
                        return dict(alert)
            return None

        alert = _wait("the dead-man alert to reach the receiver", delivered, 60)
        assert alert["labels"]["check"] == "nightly-eval"
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook_url"].endswith(f"{RULE}.md")
    finally:
        for proc in procs:
            _stop(proc)
        sidecar.stop()
        receiver.shutdown()
