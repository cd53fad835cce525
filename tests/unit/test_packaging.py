"""The package declares what it imports: every third-party module imported anywhere in include/batchml belongs to a
distribution that pyproject.toml lists (as a dependency or in an extra). The install itself, into a fresh
virtualenv, is tested in tests/integration/test_install.py."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "batchml"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normalize(re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0]) for r in requirements}


def imported_modules() -> dict[str, str]:
    """Top-level module name -> one file that imports it (imports inside functions included)."""
    out: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                out.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return out


def test_every_third_party_import_is_declared():
    owners = packages_distributions()
    missing = []
    for module, where in imported_modules().items():
        if module in sys.stdlib_module_names or module in ("batchml", "__future__"):
            continue
        dists = {_normalize(d) for d in owners.get(module, [])}
        if not dists:
            missing.append(f"{module} (imported by {where}) is not installed at all")
        elif not dists & declared():
            missing.append(f"{module} (imported by {where}) comes from {sorted(dists)}, not declared in pyproject.toml")
    assert missing == []


def test_the_package_ships_its_templates_and_type_marker():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["batchml"]
    for pattern in config:
        assert list(PACKAGE.glob(pattern)), f"package-data {pattern!r} matches no file"
