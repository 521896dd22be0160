"""Writes the Grafana dashboards (``dashboards/*.json``) and the Helm chart's copies of them and of the
alert rules (``helm/claude-sidecar/files/``; Helm cannot read files outside the chart).

    python -m dashboards.generate            # regenerate everything
    python -m dashboards.generate --check    # exit 1 if any committed file differs from a fresh render

The output is deterministic (sorted keys, fixed panel ids), so a regenerated file is byte-identical.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import operations, sessions, traffic

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
ALERT_DIR = ROOT / "alerts"
CHART_FILES = ROOT / "helm" / "claude-sidecar" / "files"
BOARDS: tuple[tuple[str, Callable[[], dash.Dashboard]], ...] = (
    ("overview", traffic.overview),
    ("latency", traffic.latency),
    ("sessions", sessions.sessions),
    ("prompt-cache", sessions.prompt_cache),
    ("fleet", operations.fleet),
    ("health", operations.health),
)


def render(board: dash.Dashboard) -> str:
    """The dashboard as importable JSON text (2-space indent, sorted keys, trailing newline)."""
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def outputs(
    dashboard_dir: Path = DASHBOARD_DIR, chart_files: Path = CHART_FILES, alert_dir: Path = ALERT_DIR
) -> dict[Path, str]:
    """Every generated file and its content: dashboards, their chart copies, the chart's rule copies."""
    files: dict[Path, str] = {}
    for name, factory in BOARDS:
        text = render(factory())
        files[dashboard_dir / f"{name}.json"] = text
        files[chart_files / "dashboards" / f"{name}.json"] = text
    for rules in sorted(alert_dir.glob("*.rules.yml")):
        files[chart_files / "alerts" / rules.name] = rules.read_text(encoding="utf-8")
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    """Paths whose content on disk differs from ``files`` (missing files count as stale)."""
    return [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="report stale files instead of writing them")
    args = parser.parse_args(argv)
    files = outputs()
    outdated = stale(files)
    if args.check:
        for path in outdated:
            print(f"stale: {path.relative_to(ROOT)} (run python -m dashboards.generate)", file=sys.stderr)
        return 1 if outdated else 0
    for path in outdated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
