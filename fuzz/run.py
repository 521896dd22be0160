"""Fuzz the sans-I/O byte path for a while: ``python fuzz/run.py --seconds 30``.

Engines: ``atheris`` (coverage-guided libFuzzer; ``pip install atheris``) or ``hypothesis`` (random and
seed-mutated inputs through the same targets, for machines without atheris). ``auto`` picks atheris when
it is installed. Exit status: 0 when nothing was found, non-zero on the first failing input (atheris
writes it under ``--artifacts``; hypothesis prints the shrunk example).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python fuzz/run.py", description=__doc__)
    p.add_argument("--seconds", type=float, default=30.0, help="how long to fuzz (default 30)")
    p.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    p.add_argument("--target", help="fuzz one target only (default: all, chosen by the first byte)")
    p.add_argument("--artifacts", help="directory for crash inputs (atheris; default: a temp dir)")
    return p


def _entry(target: str | None) -> tuple[Callable[[bytes], None], list[bytes]]:
    """The function to fuzz and its seeds; a single target gets its selector byte prepended."""
    from fuzz.seeds import seeds
    from fuzz.targets import NAMES, one_input

    if target is None:
        return one_input, seeds()
    if target not in NAMES:
        raise SystemExit(f"unknown target {target!r}; choose from {', '.join(NAMES)}")
    index = NAMES.index(target)
    prefix = bytes([index])

    def entry(data: bytes) -> None:
        one_input(prefix + data)

    return entry, [s[1:] for s in seeds() if s[0] == index]


def run_atheris(seconds: float, target: str | None, artifacts: str | None) -> int:
    """Run libFuzzer through atheris. Does not return: libFuzzer ends the process itself."""
    atheris: Any = importlib.import_module("atheris")
    with atheris.instrument_imports():
        entry, seeds = _entry(target)
    corpus = Path(tempfile.mkdtemp(prefix="sidecar-fuzz-corpus-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    out = Path(artifacts) if artifacts else Path(tempfile.mkdtemp(prefix="sidecar-fuzz-crashes-"))
    out.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        f"-max_total_time={max(1, round(seconds))}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-max_len=16384",
        f"-artifact_prefix={out}/",
        str(corpus),
    ]
    print(f"atheris: fuzzing for {seconds:g} s; crash inputs go to {out}/", flush=True)
    atheris.Setup(args, entry)
    atheris.Fuzz()
    return 0  # pragma: no cover - libFuzzer exits before this


def run_hypothesis(seconds: float, target: str | None, batch: int = 300) -> int:
    """Random and seed-mutated inputs, in batches until ``seconds`` have passed; 1 on a failure."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    entry, seeds = _entry(target)
    edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(max_size=6)), max_size=6)

    def mutate(seed: bytes, changes: list[tuple[int, bytes]]) -> bytes:
        data = bytearray(seed)
        for pos, patch in changes:
            at = pos % (len(data) + 1)
            data[at : at + (pos >> 12) % 4] = patch  # replace 0-3 bytes by the patch
        return bytes(data)

    inputs = st.binary(max_size=2048) | st.builds(mutate, st.sampled_from(seeds), edits)

    @settings(max_examples=batch, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(inputs)
    def check(data: bytes) -> None:
        entry(data)

    deadline, runs = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < deadline:
            check()
            runs += batch
    except Exception:
        traceback.print_exc()
        return 1
    print(f"hypothesis: {runs} inputs in {seconds:g} s, no failures", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as a script: make ``fuzz`` and ``sidecar`` importable
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
    if engine == "atheris":
        return run_atheris(args.seconds, args.target, args.artifacts)
    return run_hypothesis(args.seconds, args.target)


if __name__ == "__main__":
    sys.exit(main())
