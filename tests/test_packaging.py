"""Packaging: what the code imports is what pyproject.toml installs.

The test environment has every extra installed, so a missing runtime dependency would never show
in an import; ``pip install -e .`` on a fresh machine would then fail at ``tessera serve``. This
reads the imports statically instead.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "tessera"

OPTIONAL = {
    "redis": ("redis", "redis"),
    "hiredis": ("redis", "redis"),  # installed as redis[hiredis]
    "asyncpg": ("postgres", "asyncpg"),
    "httpx": ("client", "httpx"),
}
"""Modules allowed only behind an extra: module -> (extra, the requirement there that brings it)."""


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names imported at module level (imports inside functions are lazy, allowed)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_every_module_level_import_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {
        extra: {_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()
    }
    distributions = packages_distributions()
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        for module in _module_level_imports(path):
            if module in sys.stdlib_module_names or module in ("tessera", "__future__"):
                continue
            dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
            if dists & core:
                continue
            optional = OPTIONAL.get(module)
            if optional is not None and optional[1] in extras.get(optional[0], set()):
                continue
            problems.append(f"{path.relative_to(ROOT)} imports {module} ({sorted(dists)})")
    assert problems == []
