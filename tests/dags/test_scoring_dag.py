"""The scoring DAG run by a real Airflow (dag.test), against SQLite and against PostgreSQL."""

import datetime as dt

import pandas as pd
import pytest

from batchml import warehouse as wh
from dagtest import run_for_day

pytestmark = [pytest.mark.airflow, pytest.mark.mlflow]
D = dt.date(2026, 5, 25)


@pytest.fixture(autouse=True)
def tiny_dags(tmp_path, monkeypatch, tiny_spec):
    """dag.test() needs the DAG in the metadata DB: let the DAG folder generate the tiny use case's DAGs too."""
    import shutil

    shutil.copy(tiny_spec.path, tmp_path / "tiny.yaml")
    monkeypatch.setenv("BATCHML_SPECS_DIR", str(tmp_path))


def _run(dag, day: dt.date, conf: dict | None = None):
    run = run_for_day(dag, day, conf)
    return run, run.states, run.value("publish_scores")


def test_scoring_dag_publishes_each_date_once(airflow_db, tiny_spec, scoring_env):
    from batchml.pipelines.scoring import build_dag

    dag = build_dag(tiny_spec, scoring_env)
    for _ in range(2):  # a re-run replaces the date's rows
        run, states, result = _run(dag, D)
        assert run.state == "success", states
    assert result["rows"] == 400 and result["champion"] == 1
    assert set(result["seconds"]) >= {"predict", "reason_codes", "load", "validate", "publish"}
    engine = wh.create_engine(scoring_env.warehouse_url)
    frame = pd.read_sql("SELECT * FROM tiny_scores", engine)
    assert len(frame) == 400 and frame.user_id.is_unique
    assert frame.airflow_run_id.nunique() == 1 and frame.airflow_run_id.iloc[0].startswith("manual__")

    other = D - dt.timedelta(days=7)  # another snapshot date, chosen with the as_of param
    run, states, result = _run(dag, D, {"as_of": other.isoformat()})
    assert run.state == "success", states and result["as_of"] == other.isoformat()
    counts = pd.read_sql("SELECT as_of_date, COUNT(*) AS n FROM tiny_scores GROUP BY as_of_date", engine)
    assert sorted(counts.n) == [400, 400]


def test_scoring_dag_fails_cleanly_without_features(airflow_db, tiny_spec, scoring_env):
    from batchml.pipelines.scoring import build_dag

    run, states, _ = _run(build_dag(tiny_spec, scoring_env), dt.date(2026, 5, 26))
    assert run.state == "failed"
    assert states["score_features"] == "failed" and states["publish_scores"] == "upstream_failed"
