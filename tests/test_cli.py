"""The command line's own surface: ``serve --help`` describes every option and the variable behind it."""

from __future__ import annotations

import argparse
import subprocess
import sys

from sidecar.cli import build_parser
from sidecar.settings import KNOWN_ENV, PARSERS


def _serve_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["serve"]


def test_every_serve_option_has_help_naming_its_variable() -> None:
    options = [a for a in _serve_parser()._actions if a.dest != "help"]
    assert {a.dest for a in options} >= {"host", "port", "config", "upstream_url", "store", "admin_port"}
    for action in options:
        env = "SIDECAR_" + action.dest.upper()
        assert action.help and len(action.help) > 20, action.dest
        assert f"[{env}]" in action.help, (action.dest, action.help)
        assert env in KNOWN_ENV
        assert action.dest == "config" or action.dest in PARSERS  # a flag sets the setting of its name


def test_serve_help_as_printed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for text in ("--port PORT", "[SIDECAR_PORT]", "[SIDECAR_ADMIN_PORT]", "[SIDECAR_LOG_FORMAT]"):
        assert text in out
    assert "flag > environment > file > default" in out and "SIDECAR_FLEET_PORT" in out
