"""The seam (``sidecar.proxy.upstream``): the handler, the relay and the call state depend on it alone,
never on a transport; aiohttp stays inside its adapter (import-linter contracts in ``pyproject.toml``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS = ("aiohttp", "yarl", "httptools", "sidecar.proxy.h1", "sidecar.proxy.aiohttp_client")


def test_the_handler_loads_no_transport() -> None:
    code = (
        "import json, sys\n"
        "import sidecar.proxy.handler, sidecar.proxy.relay, sidecar.proxy.context, sidecar.policy.calls\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    assert "sidecar.proxy.upstream" in loaded
    assert [m for m in loaded if m.startswith(TRANSPORTS)] == []


def test_import_contracts_of_the_seam_hold() -> None:
    """Static, so imports under ``TYPE_CHECKING`` count too."""
    lint_imports = shutil.which("lint-imports")
    if lint_imports is None:
        pytest.skip("import-linter is not installed")
    result = subprocess.run(
        [lint_imports, "--no-cache", "--contract", "aiohttp-in-adapter", "--contract", "proxy-seam"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout
