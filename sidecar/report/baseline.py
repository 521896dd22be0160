"""``check --baseline`` / ``--save-baseline``: the JSON file of a previous run's measurements."""

from __future__ import annotations

import json

from sidecar.core.report import Baseline, CheckResult, parse_baseline
from sidecar.report.args import UsageError


def load_baseline(path: str) -> Baseline:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise UsageError(f"--baseline: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--baseline: {path} is not JSON: {exc}") from None
    try:
        return parse_baseline(doc)
    except ValueError as exc:
        raise UsageError(f"--baseline: {path}: {exc}") from None


def save_baseline(path: str, result: CheckResult) -> str:
    """Write the measurements unless the run failed or saw nothing; return what happened, for stderr."""
    if not result.ok:
        return f"baseline not saved to {path}: the check failed"
    if not result.measurements["duration_p95_ms"]:
        return f"baseline not saved to {path}: no successful model calls in the window"
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result.measurements, f, indent=2, sort_keys=True)
            f.write("\n")
    except OSError as exc:
        raise UsageError(f"--save-baseline: cannot write {path}: {exc.strerror}") from None
    return f"baseline saved to {path}"
