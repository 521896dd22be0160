"""``pip install -e '.[dev]'`` is enough for ``python -m dashboards.generate``: the dev extra names every
third-party distribution the dashboards code imports (beyond the runtime dependencies), and README says so."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _imported_top_levels(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "dashboards", "sidecar"}


def test_dev_extra_covers_what_dashboards_generate_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dev = _names(project["optional-dependencies"]["dev"])
    runtime = _names(project["dependencies"])
    distributions = importlib.metadata.packages_distributions()
    imported = _imported_top_levels(ROOT / "dashboards")
    assert "grafana_foundation_sdk" in imported
    for module in imported:
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        assert names & (dev | runtime), f"dashboards imports {module} ({names}); add it to the dev extra"


def test_readme_documents_the_dev_extra_and_the_generator() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -e '.[dev]'" in readme and "python -m dashboards.generate" in readme
