"""End to end through a real Airflow (dag.test): train, then features -> scoring -> monitoring day by day; on
drifted data monitoring schedules a retraining for the day the drift's labels mature, the monitoring run of that day
requests it, and the training run it asks for registers a new version through the gate with the reason on its MLflow
run."""

import datetime as dt
import json

import pandas as pd
import pytest

from dagtest import run_for_day

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.mlflow]

T = dt.date(2026, 7, 1)
# the drift knob turns on on 07-05; 07-15 is two weeks after T; its 30-day labels mature on 08-14 (DUE_DAY)
STABLE_DAY, DRIFTED_DAY = dt.date(2026, 7, 2), dt.date(2026, 7, 15)
DUE_DAY = dt.date(2026, 8, 14)


@pytest.fixture(scope="module")
def chain_landing(tmp_path_factory):
    """The generated data of `training_landing` (same customers, seed and drift), 30 days longer: to 2026-08-18,
    so that the labels of the drifted day mature within it."""
    from batchml.generate import GeneratorConfig, generate
    from batchml.storage import Landing
    from sample_data import DRIFT_START, SMALL_START

    landing = Landing(str(tmp_path_factory.mktemp("chain") / "landing"))
    generate(GeneratorConfig(customers=900, start=SMALL_START, days=230, seed=13, drift_start=DRIFT_START,
                             drift_strength=2.5), landing)
    return landing


def _test(dag, day: dt.date, conf: dict | None = None) -> tuple[str, dict, dict]:
    """Run a DAG for `day`; returns (state, task states, return values of the tasks that succeeded)."""
    run = run_for_day(dag, day, conf)
    return run.state, run.states, run.values


def test_drift_requests_a_retrain_that_registers_a_new_version(
    airflow_db, small_training_spec, chain_landing, isolated_home
):
    from batchml import gate, monitoring, registry
    from batchml import warehouse as wh
    from batchml.pipelines import features, scoring, training
    from batchml.pipelines import monitoring as monitoring_dags
    from batchml.pipelines.monitoring import latest_retrain_request

    spec = small_training_spec
    settings = isolated_home(landing_url=chain_landing.url)
    state, states, _ = _test(training.build_training_dag(spec, settings), T, {"reason": "first model"})
    assert state == "success", states
    before_drift = latest_retrain_request(spec)

    dags = [features.build_dag(spec, settings), scoring.build_dag(spec, settings), monitoring_dags.build_dag(spec, settings)]
    results = {}
    for day in (STABLE_DAY, DRIFTED_DAY, DUE_DAY):
        if day == DUE_DAY:  # nothing was requested while the drift's labels were maturing
            assert latest_retrain_request(spec) == before_drift
        for dag in dags:
            state, states, values = _test(dag, day)
            assert state == "success", (dag.dag_id, day, states)
            results[(dag.dag_id, day)] = (states, values)

    stable_states, stable = results[("churn__monitoring", STABLE_DAY)]
    assert stable_states["request_retrain"] == "skipped" and not stable["decide_retrain"]["request"]
    drift_states, drifted = results[("churn__monitoring", DRIFTED_DAY)]
    assert drift_states["request_retrain"] == "skipped", drifted["decide_retrain"]
    scheduled = drifted["decide_retrain"]
    assert scheduled["scheduled_for"] == DUE_DAY.isoformat() == (DRIFTED_DAY + dt.timedelta(days=30)).isoformat()
    due_states, due = results[("churn__monitoring", DUE_DAY)]
    assert due_states["request_retrain"] == "success", due["decide_retrain"]
    request = due["request_retrain"]
    assert request["training_date"] == DUE_DAY.isoformat() and request["trigger"] == "drift"
    assert "txn_" in request["reason"]  # the drifted features are named
    assert f"drift first seen on {DRIFTED_DAY}" in request["reason"]  # and why the retraining waited
    assert request["figures"]["label_delay"]["drift_since"] == DRIFTED_DAY.isoformat()

    # the request reached Airflow as an asset event the training DAG is scheduled on
    event = latest_retrain_request(spec)
    assert event and event != before_drift and event["reason"] == request["reason"]
    assert "churn.retrain_request" in repr(training.build_training_dag(spec, settings).timetable)

    # monitoring figures and the drift report, for analysts and people
    engine = wh.engine(settings.warehouse_url)
    rows = pd.read_sql("SELECT * FROM churn_monitoring", engine)
    per_day = rows.groupby(rows.as_of_date.astype(str)).size()
    assert set(per_day.index) == {STABLE_DAY.isoformat(), DRIFTED_DAY.isoformat(), DUE_DAY.isoformat()}
    decision_rows = rows[rows.metric == "retrain_request"]
    decision_rows = decision_rows.set_index(decision_rows.as_of_date.astype(str))
    assert decision_rows.loc[DRIFTED_DAY.isoformat(), "status"] == "scheduled"
    assert decision_rows.loc[DUE_DAY.isoformat(), "status"] == "requested"
    assert decision_rows.loc[STABLE_DAY.isoformat(), "status"] == "ok"
    verdict = monitoring.retrain_verdict(engine, "churn_monitoring", DRIFTED_DAY)  # what the demo prints
    assert verdict["status"] == "scheduled" and verdict["detail"] == decision_rows.loc[DRIFTED_DAY.isoformat(), "detail"]
    assert verdict["alerts"] == int(((rows.as_of_date.astype(str) == DRIFTED_DAY.isoformat())
                                     & (rows.status == "alert")).sum()) > 0
    assert monitoring.retrain_verdict(engine, "churn_monitoring", DUE_DAY)["status"] == "requested"
    assert monitoring.retrain_verdict(engine, "churn_monitoring", dt.date(2026, 7, 3)) is None
    assert drifted["publish_monitoring"]["report"].endswith(f"drift_{DRIFTED_DAY}.html")

    # what the scheduler would do with the event: a training run for the requested date and reason
    conf = {k: event[k] for k in ("training_date", "reason", "trigger", "figures")}
    state, states, values = _test(training.build_training_dag(spec, settings), DUE_DAY, conf)
    assert state == "success", states
    result = values["register_and_gate"]
    assert result["version"] == 2 and result["verdict"] in ("champion", "challenger", "rejected")
    client = registry.connect(settings)
    tags = client.get_run(result["mlflow_run_id"]).data.tags
    assert tags["batchml.trigger"] == "drift" and tags["batchml.reason"].startswith("monitoring: ")
    assert tags["batchml.training_date"] == DUE_DAY.isoformat()
    artifacts = {a.path for a in client.list_artifacts(result["mlflow_run_id"])}
    assert "retrain_request.json" in artifacts
    events = gate.read_events(engine, "churn")
    assert [e["model_version"] for e in events] == [1, 2]
    assert json.dumps(events[-1]["metrics"]["champion"])  # gated against the first champion on the same window
