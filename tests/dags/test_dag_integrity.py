"""Every DAG file imports cleanly and fast, without heavy libraries, and yields the DAGs its specs promise."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ERRORS_FILE = REPO / "dags" / "spec_errors.py"  # reports invalid specs; defines no DAG
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_") and p != ERRORS_FILE)
HEAVY = ["great_expectations", "mlflow", "pyspark", "xgboost", "lightgbm", "shap", "sklearn", "boto3", "scipy"]
EXPECTED_TASKS = {
    "features": ["wait_for_input", "check_raw_landed", "validate_raw", "build_features", "validate_features",
                 "publish_features"],
}

_PROBE = r"""
import json, sys, time
import airflow.sdk  # paid once by the DAG processor, not by each file
before = set(sys.modules)
start = time.perf_counter()
import runpy
namespace = runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - start
from airflow.sdk import DAG
dags = {k: v for k, v in namespace.items() if isinstance(v, DAG)}
heavy = sorted({m.split('.')[0] for m in set(sys.modules) - before} & set(json.loads(sys.argv[2])))
print(json.dumps({"seconds": elapsed, "dags": sorted(dags), "heavy": heavy,
                  "tasks": {d: sorted(t.task_id for t in v.tasks) for d, v in dags.items()},
                  "tags": {d: sorted(v.tags) for d, v in dags.items()},
                  "doc": {d: bool(v.doc_md and len(v.doc_md) > 200) for d, v in dags.items()}}))
"""


def _probe(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(path), json.dumps(HEAVY)], capture_output=True, text=True)
    assert done.returncode == 0, f"{path.name} failed to import:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_dag_file_imports_fast_and_light(dag_file, churn_spec):
    result = _probe(dag_file)
    print(f"\n{dag_file.name}: parsed in {result['seconds'] * 1000:.0f} ms, DAGs {result['dags']}")
    assert result["heavy"] == [], f"dags/{dag_file.name} imports heavy modules at parse time: {result['heavy']}"
    # the parse time itself is a benchmark figure (benchmarks/dag_parse.py), not a timed test: it moves with load
    kind = dag_file.stem
    dag_id = churn_spec.dag_id(kind)
    assert dag_id in result["dags"], f"{dag_id} is missing from dags/{dag_file.name}"
    for dag in result["dags"]:
        assert result["tags"][dag], f"{dag} in dags/{dag_file.name} has no tags"
        assert result["doc"][dag], f"{dag} in dags/{dag_file.name} has no doc_md worth reading"
    if kind in EXPECTED_TASKS:
        assert result["tasks"][dag_id] == sorted(EXPECTED_TASKS[kind]), f"{dag_id} has unexpected tasks"


def test_dag_bag_has_no_import_errors(airflow_db):
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(REPO / "dags"), bundle_path=REPO / "dags", bundle_name="dags-folder")
    assert bag.import_errors == {}, bag.import_errors
    assert "churn__features" in bag.dag_ids


def test_every_spec_yields_one_dag_per_kind():
    from batchml.settings import get_settings
    from batchml.specs import discover_specs

    specs = discover_specs(get_settings().specs_dir)
    found = set()
    for path in DAG_FILES:
        found |= set(_probe(path)["dags"])
    assert found == {spec.dag_id(p.stem) for spec in specs for p in DAG_FILES}


def test_the_spec_errors_file_defines_nothing_when_every_spec_is_valid():
    result = _probe(ERRORS_FILE)
    assert result["dags"] == [] and result["heavy"] == []


def test_a_bad_spec_is_an_import_error_naming_file_and_field_and_the_others_keep_their_dags(tmp_path, monkeypatch):
    import shutil

    shutil.copy(REPO / "specs" / "churn.yaml", tmp_path / "churn.yaml")
    (tmp_path / "broken.yaml").write_text((REPO / "tests" / "fixtures" / "specs" / "bad_window.yaml").read_text().replace("name: bad_window", "name: broken"))
    monkeypatch.setenv("BATCHML_SPECS_DIR", str(tmp_path))
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(REPO / "dags"), bundle_path=REPO / "dags", bundle_name="dags-folder")
    assert bag.import_errors, "a bad spec must not make DAGs vanish silently"
    assert [Path(f).name for f in bag.import_errors] == ["spec_errors.py"]
    (error,) = bag.import_errors.values()
    assert "broken.yaml" in error and "features.aggregates[0].windows" in error
    assert "broken__features" in error and "broken__scoring" in error  # what is missing, by name
    assert {f"churn__{kind}" for kind in ("features", "training", "model_admin", "scoring", "monitoring")} <= set(
        bag.dag_ids), "the valid use case keeps every DAG"


def test_every_param_has_a_valid_default_or_says_why_it_is_required(airflow_db):
    """What the trigger form does: each Param's default is validated against its schema. A Param whose default
    cannot pass (the user must fill it in) says so in its description."""
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(REPO / "dags"), bundle_path=REPO / "dags", bundle_name="dags-folder")
    checked = 0
    for dag_id in bag.dag_ids:
        params = bag.get_dag(dag_id).params
        for name in params:
            param = params.get_param(name)
            assert param.description, f"{dag_id}: param {name!r} has no description"
            try:
                param.resolve(suppress_exception=False)
            except Exception as exc:  # ParamValidationError
                assert param.description.startswith("Required"), (
                    f"{dag_id}: param {name!r} has no valid default ({exc}) and its description does not say it "
                    "is required")
            checked += 1
    assert checked >= 10
