"""The package's shape holds: no import cycle between its modules, Airflow only in the wiring layer, and no model,
MLflow, plotting or SQL work in the wiring layer. Imports inside functions count: a lazy import is still a
dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "batchml"
WIRING = "batchml.pipelines"
# libraries whose work belongs in the lifecycle modules, not in the DAG wiring
LOGIC_LIBRARIES = {"sqlalchemy", "mlflow", "matplotlib", "sklearn", "xgboost", "lightgbm", "shap", "pandas", "numpy",
                   "pyarrow", "great_expectations", "pyspark", "scipy"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module an import statement names (at any depth), with its line; `from a import b` also names `a.b`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
            out += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _ in _imports(path):
            if target in MODULES and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith(WIRING)])
def test_airflow_is_imported_only_by_the_wiring(module):
    offending = [f"line {line}: {target}" for target, line in _imports(MODULES[module])
                 if target.split(".")[0] == "airflow"]
    assert offending == [], f"{module} imports Airflow; that belongs in {WIRING}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(WIRING)])
def test_the_wiring_does_no_model_sql_or_plotting_work(module):
    offending = sorted({f"line {line}: {target}" for target, line in _imports(MODULES[module])
                        if target.split(".")[0] in LOGIC_LIBRARIES})
    assert offending == [], f"{module} uses libraries whose work belongs in the lifecycle modules"
