"""README and docs/ stay true: the first lines are the two commands, links and named test files exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_run_and_the_test_command() -> None:
    lines = README.splitlines()
    assert lines[0] == "# claude-sidecar" and lines[2] == "```sh" and lines[5] == "```"
    run, test = (line.split("#")[0].strip() for line in lines[3:5])
    assert run == "pip install -e . && claude-sidecar demo"
    assert test == "./scripts/test" and (ROOT / "scripts" / "test").is_file()
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().endswith("./scripts/test")


def test_relative_links_resolve() -> None:
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name}: {target}"


def test_the_guarantees_name_tests_that_exist() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[^`:]+?)(?:::(\w+))?`", text)
    assert len(named) > 20
    for path, function in named:
        assert (ROOT / path).exists(), path
        if function:
            assert f"def {function}(" in (ROOT / path).read_text(encoding="utf-8"), function
