"""``serve`` and its ports, as real processes: a taken port is one line naming its setting; the ready line
names every address; a second sidecar on another --port does not collide on the fleet port."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.net import free_port
from tests.server.procs import Proc, free_pair, held_port

DEAD_UPSTREAM = "http://127.0.0.1:1"


# The variable and the flag a taken port's line names, per listener.
NAMES = {
    "proxy": ("SIDECAR_PORT", "--port"),
    "admin": ("SIDECAR_ADMIN_PORT", "--admin-port"),
    "fleet": ("SIDECAR_FLEET_PORT", "SIDECAR_FLEET_PORT"),
}


@pytest.mark.parametrize("which", ["proxy", "admin", "fleet"])
def test_a_taken_port_is_one_line_naming_its_setting(tmp_path: Path, which: str) -> None:
    with held_port() as taken:
        busy = int(taken.getsockname()[1])
        env = {
            "SIDECAR_UPSTREAM_URL": DEAD_UPSTREAM,
            "SIDECAR_PORT": str(busy if which == "proxy" else free_port()),
            "SIDECAR_FLEET_PORT": str(busy if which == "fleet" else 0),
        }
        if which == "admin":
            env["SIDECAR_ADMIN_PORT"] = str(busy)
        proc = Proc(tmp_path, "serve", **env)
        code = proc.wait(60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, proc.stderr  # no traceback, no "ready" before the failure
    variable, flag = NAMES[which]
    assert variable in lines[0] and flag in lines[0]
    assert f"127.0.0.1:{busy}" in lines[0] and "in use" in lines[0]


def test_a_second_serve_on_another_port_gets_its_own_fleet_port(tmp_path: Path) -> None:
    first_port, second_port = free_pair(), free_pair()
    first = Proc(tmp_path / "a", "serve", "--port", str(first_port), SIDECAR_UPSTREAM_URL=DEAD_UPSTREAM)
    second = Proc(tmp_path / "b", "serve", "--port", str(second_port), SIDECAR_UPSTREAM_URL=DEAD_UPSTREAM)
    try:
        first.wait_ready(first_port)
        second.wait_ready(second_port)
        for port in (first_port, second_port):
            fleet = httpx.get(f"http://127.0.0.1:{port}/sidecar/v1/fleet", timeout=5).json()
            assert fleet["connect_url"] == f"ws://127.0.0.1:{port + 1}/sidecar/v1/fleet/connect"
    finally:
        first.stop()
        second.stop()
    assert first.proc.returncode == 0 and second.proc.returncode == 0


def test_ready_line_names_every_address_and_the_console(tmp_path: Path) -> None:
    port, admin, fleet = free_port(), free_port(), free_port()
    proc = Proc(
        tmp_path,
        "serve",
        "--log-format",
        "json",
        SIDECAR_PORT=str(port),
        SIDECAR_ADMIN_PORT=str(admin),
        SIDECAR_FLEET_PORT=str(fleet),
        SIDECAR_UPSTREAM_URL=DEAD_UPSTREAM,
    )
    try:
        proc.wait_output('"sidecar ready"')
    finally:
        proc.stop()
    (ready,) = [line for line in proc.json_lines() if line["message"] == "sidecar ready"]
    assert ready["proxy"] == f"http://127.0.0.1:{port}"
    assert ready["admin"] == f"http://127.0.0.1:{admin}"
    assert ready["fleet"] == f"ws://127.0.0.1:{fleet}/sidecar/v1/fleet/connect"
    assert ready["console"] == f"http://127.0.0.1:{admin}/ui/"


def test_text_logs_name_the_addresses_and_warn_about_a_misspelt_variable(tmp_path: Path) -> None:
    port = free_port()
    proc = Proc(
        tmp_path,
        "serve",
        SIDECAR_PORT=str(port),
        SIDECAR_FLEET_PORT="0",
        SIDECAR_UPSTREAM_URL=DEAD_UPSTREAM,
        SIDECAR_LOG_FORMAT="text",
        SIDECAR_PROMT_CACHE="off",
    )
    try:
        proc.wait_output("sidecar ready")
    finally:
        proc.stop()
    lines = proc.stderr.splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    (ready,) = [line for line in lines if "sidecar ready" in line]
    assert f"proxy=http://127.0.0.1:{port}" in ready and f"console=http://127.0.0.1:{port}/ui/" in ready
    assert "fleet=ws://127.0.0.1:" in ready
    (typo,) = [line for line in lines if "SIDECAR_PROMT_CACHE" in line]
    assert "WARNING" in typo and "did you mean SIDECAR_PROMPT_CACHE?" in typo


def test_ctrl_c_once_ready_drains_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    proc = Proc(
        tmp_path, "serve", SIDECAR_PORT=str(port), SIDECAR_FLEET_PORT="0", SIDECAR_UPSTREAM_URL=DEAD_UPSTREAM
    )
    proc.wait_ready(port)
    assert proc.interrupt() == 0
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr


def test_ctrl_c_during_start_up_exits_without_a_traceback(tmp_path: Path) -> None:
    proc = Proc(
        tmp_path, "serve", SIDECAR_PORT="0", SIDECAR_FLEET_PORT="0", SIDECAR_UPSTREAM_URL=DEAD_UPSTREAM
    )
    time.sleep(0.3)  # imports and wiring are under way
    assert proc.interrupt() in (0, 130, -2)  # -2: ended by SIGINT itself, what a shell shows as 130
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
