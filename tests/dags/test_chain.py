"""End to end through a real Airflow (dag.test): train, then features -> scoring -> monitoring day by day; on
drifted data monitoring requests a retrain, and the training run it asks for registers a new version through the
gate with the reason on its MLflow run."""

import datetime as dt
import json

import pandas as pd
import pytest
from dagtest import run_for_day

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.mlflow]

T = dt.date(2026, 7, 1)
# the drift knob turns on on 07-05; 07-15 is two weeks after T, so the retraining reuses most snapshots
STABLE_DAY, DRIFTED_DAY = dt.date(2026, 7, 2), dt.date(2026, 7, 15)


def _test(dag, day: dt.date, conf: dict | None = None) -> tuple[str, dict, dict]:
    """Run a DAG for `day`; returns (state, task states, return values of the tasks that succeeded)."""
    run = run_for_day(dag, day, conf)
    return run.state, run.states, run.values


def test_drift_requests_a_retrain_that_registers_a_new_version(
    airflow_db, small_training_spec, training_landing, isolated_home
):
    from batchml import registry, warehouse
    from batchml.pipelines import features, monitoring, scoring, training
    from batchml.pipelines.monitoring import latest_retrain_request

    spec = small_training_spec
    settings = isolated_home(landing_url=training_landing.url)
    state, states, _ = _test(training.build_training_dag(spec, settings), T, {"reason": "first model"})
    assert state == "success", states
    before_drift = latest_retrain_request(spec)

    dags = [features.build_dag(spec, settings), scoring.build_dag(spec, settings), monitoring.build_dag(spec, settings)]
    results = {}
    for day in (STABLE_DAY, DRIFTED_DAY):
        for dag in dags:
            state, states, values = _test(dag, day)
            assert state == "success", (dag.dag_id, day, states)
            results[(dag.dag_id, day)] = (states, values)

    stable_states, stable = results[("churn__monitoring", STABLE_DAY)]
    assert stable_states["request_retrain"] == "skipped" and not stable["decide_retrain"]["request"]
    drift_states, drifted = results[("churn__monitoring", DRIFTED_DAY)]
    assert drift_states["request_retrain"] == "success", drifted["decide_retrain"]
    request = drifted["request_retrain"]
    assert request["training_date"] == DRIFTED_DAY.isoformat() and request["trigger"] == "drift"
    assert "txn_" in request["reason"]  # the drifted features are named

    # the request reached Airflow as an asset event the training DAG is scheduled on
    event = latest_retrain_request(spec)
    assert event and event != before_drift and event["reason"] == request["reason"]
    assert "churn.retrain_request" in repr(training.build_training_dag(spec, settings).timetable)

    # monitoring figures and the drift report, for analysts and people
    engine = warehouse.create_engine(settings.warehouse_url)
    rows = pd.read_sql("SELECT * FROM churn_monitoring", engine)
    per_day = rows.groupby(rows.as_of_date.astype(str)).size()
    assert set(per_day.index) == {STABLE_DAY.isoformat(), DRIFTED_DAY.isoformat()}
    decision_rows = rows[rows.metric == "retrain_request"]
    decision_rows = decision_rows.set_index(decision_rows.as_of_date.astype(str))
    assert decision_rows.loc[DRIFTED_DAY.isoformat(), "status"] == "requested"
    assert decision_rows.loc[STABLE_DAY.isoformat(), "status"] == "ok"
    verdict = warehouse.retrain_verdict(engine, "churn_monitoring", DRIFTED_DAY)  # what the demo prints
    assert verdict["status"] == "requested" and verdict["detail"] == decision_rows.loc[DRIFTED_DAY.isoformat(), "detail"]
    assert verdict["alerts"] == int(((rows.as_of_date.astype(str) == DRIFTED_DAY.isoformat())
                                     & (rows.status == "alert")).sum()) > 0
    assert warehouse.retrain_verdict(engine, "churn_monitoring", dt.date(2026, 7, 3)) is None
    assert drifted["publish_monitoring"]["report"].endswith(f"drift_{DRIFTED_DAY}.html")

    # what the scheduler would do with the event: a training run for the requested date and reason
    conf = {k: event[k] for k in ("training_date", "reason", "trigger", "figures")}
    state, states, values = _test(training.build_training_dag(spec, settings), DRIFTED_DAY, conf)
    assert state == "success", states
    result = values["register_and_gate"]
    assert result["version"] == 2 and result["verdict"] in ("champion", "challenger", "rejected")
    client = registry.connect(settings)
    tags = client.get_run(result["mlflow_run_id"]).data.tags
    assert tags["batchml.trigger"] == "drift" and tags["batchml.reason"].startswith("monitoring: ")
    assert tags["batchml.training_date"] == DRIFTED_DAY.isoformat()
    artifacts = {a.path for a in client.list_artifacts(result["mlflow_run_id"])}
    assert "retrain_request.json" in artifacts
    events = warehouse.registry_events(engine, "churn")
    assert [e["model_version"] for e in events] == [1, 2]
    assert json.dumps(events[-1]["metrics"]["champion"])  # gated against the first champion on the same window
