"""The fuzz harness (``fuzz/run.py``) runs, and its targets hold on their seeds.

The atheris engine runs for a few seconds only when atheris is installed; the hypothesis engine (same
targets, no native build needed) always runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import run
from fuzz.seeds import seeds
from fuzz.targets import NAMES, one_input
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]


def test_every_target_has_seeds_and_every_seed_passes() -> None:
    all_seeds = seeds()
    assert {NAMES[s[0]] for s in all_seeds} == set(NAMES)
    for seed in all_seeds:
        one_input(seed)


def test_hypothesis_engine_runs_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--engine", "hypothesis", "--seconds", "1.5"]) == 0
    assert "no failures" in capsys.readouterr().out


def test_single_target_selection() -> None:
    assert run.main(["--engine", "hypothesis", "--seconds", "0.2", "--target", "cache_planner"]) == 0
    with pytest.raises(SystemExit, match="unknown target"):
        run.main(["--engine", "hypothesis", "--target", "nope"])


def test_atheris_engine_runs_a_few_seconds(tmp_path: Path) -> None:
    require_service(importlib.util.find_spec("atheris") is not None, "atheris (pip install atheris)")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), "--engine", "atheris", "--seconds", "3"],
        cwd=tmp_path,  # libFuzzer may drop files in the working directory
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr and "Uncaught Python exception" not in proc.stderr
