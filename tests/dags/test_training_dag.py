"""The training DAG run by a real Airflow (dag.test) on small generated data, twice: the second run meets the
first run's champion at the gate."""

import datetime as dt
from pathlib import Path

import pytest

from dagtest import run_for_day
from sample_data import SMALL_TRAINING_DATE, copy_training_snapshots

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.mlflow]

T = SMALL_TRAINING_DATE


def _run(dag, day: dt.date, conf: dict | None = None):
    run = run_for_day(dag, day, conf)
    return run, run.states, run.value("register_and_gate")


def test_training_dag_registers_a_champion_then_gates_the_next_run(
    airflow_db, small_training_spec, training_landing, isolated_home
):
    from batchml import gate, registry
    from batchml import warehouse as wh
    from batchml.partitions import snapshot_plan
    from batchml.pipelines.training import build_training_dag
    from batchml.storage import feature_partition_dir

    settings = isolated_home(landing_url=training_landing.url)
    dag = build_training_dag(small_training_spec, settings)
    run, states, first = _run(dag, T, {"reason": "first model for the demo"})
    assert run.state == "success", states
    plan = snapshot_plan(small_training_spec, T)
    for s in plan.all:  # the missing snapshots were built and published
        assert (feature_partition_dir(settings.features_root, "churn", s) / "part-0.parquet").exists()
    assert first["verdict"] == "champion" and first["version"] == 1
    assert Path(first["model_card"]).exists()
    assert first["test_roc_auc"] > 0.6

    run, states, second = _run(dag, T, {"trials": 1})
    assert run.state == "success", states
    assert second["version"] == 2
    assert second["verdict"] in ("challenger", "champion", "rejected")
    client = registry.connect(settings)
    champion = registry.resolve_champion(client, "churn")
    events = gate.read_events(wh.engine(settings.warehouse_url), "churn")
    assert [e["model_version"] for e in events] == [1, 2]
    last = events[-1]
    assert last["metrics"]["champion"], "the second run must be compared with the first run's champion"
    margin = small_training_spec.training.gate.margin
    beat = last["metrics"]["candidate"]["roc_auc"] >= last["metrics"]["champion"]["roc_auc"] + margin
    assert (champion == 2) == (beat and second["verdict"] == "champion")
    tags = client.get_run(first["mlflow_run_id"]).data.tags
    assert tags["batchml.reason"] == "first model for the demo"


def test_too_few_rows_fails_before_anything_is_registered(airflow_db, small_training_spec, training_landing,
                                                         training_snapshots, isolated_home):
    from batchml import registry
    from batchml.pipelines.training import build_training_dag
    from batchml.specs import UseCaseSpec

    data = small_training_spec.model_dump()
    data["training"]["min_rows"] = 100_000
    spec = UseCaseSpec.model_validate(data)
    settings = isolated_home(landing_url=training_landing.url)
    copy_training_snapshots(training_snapshots, settings)  # built by the test above; not what this one is about
    run, states, _ = _run(build_training_dag(spec, settings), T)
    assert run.state == "failed"
    assert states["build_training_set"] == "failed"
    assert states["register_and_gate"] == "upstream_failed"
    client = registry.connect(settings)
    assert client.search_registered_models() == []  # the registry is unchanged
