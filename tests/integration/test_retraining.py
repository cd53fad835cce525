"""Retraining that knows about label delay, through the monitoring table (SQLite and PostgreSQL): a drift schedules
the retraining for the day its labels mature, later runs carry the schedule, the run of that day requests it with
that training date; and the realized ROC AUC of each model version on post-drift outcomes, from the score table and
the label source of generated data, against an independent calculation."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchml import monitoring
from batchml import score_table as st
from batchml import warehouse as wh
from batchml.results import DriftComputed, RealizedPerformance

DRIFT = {"score_psi": 0.4, "drifted_important": ["txn_mean_amount_7d", "txn_share_channel_app_7d", "tenure_days"],
         "drifted_important_share": 0.3}
CALM = {"score_psi": 0.02, "drifted_important": [], "drifted_important_share": 0.0}


def _monitor(spec, settings, day: dt.date, summary: dict):
    drift = DriftComputed(as_of=day, model_version=1, summary=summary, test_metrics={"roc_auc": 0.74})
    performance = RealizedPerformance(as_of=day, skipped="not measured in this test")
    decision = monitoring.decide_retrain(spec, settings, drift, performance, training_active=False)
    published = monitoring.publish_monitoring(spec, settings, drift, performance, decision, f"run_{day}")
    return decision, published


def test_a_drift_waits_for_its_labels_then_requests_the_retraining(churn_spec, isolated_home, warehouse_url):
    settings = isolated_home(warehouse_url=warehouse_url)
    first = dt.date(2026, 7, 5)
    due = first + dt.timedelta(days=churn_spec.horizon_days)
    decision, published = _monitor(churn_spec, settings, first, DRIFT)
    assert published.retrain == "scheduled" and decision.scheduled_for == due and not decision.request
    # later runs carry the schedule, drift or not, and never schedule a second one
    for day, summary in ((first + dt.timedelta(days=3), DRIFT), (first + dt.timedelta(days=20), CALM)):
        decision, published = _monitor(churn_spec, settings, day, summary)
        assert published.retrain == "scheduled" and decision.scheduled_for == due and decision.drift_since == first
    # the first monitoring run on or after the due date requests it, for the due date
    decision, published = _monitor(churn_spec, settings, due + dt.timedelta(days=1), CALM)
    assert published.retrain == "requested" and decision.request and decision.training_date == due
    request = monitoring.retrain_request(decision)
    assert request.training_date == due and request.trigger == "drift"
    assert f"drift first seen on {first}" in request.reason
    assert request.figures["label_delay"]["labels_mature_on"] == due.isoformat()
    # done: the next drifted day is within the cool-down, and nothing is pending any more
    decision, published = _monitor(churn_spec, settings, due + dt.timedelta(days=2), DRIFT)
    assert published.retrain == "suppressed" and "cool-down" in decision.suppressed and decision.scheduled_for is None
    eng = wh.engine(settings.warehouse_url)
    assert monitoring.pending_schedule(eng, churn_spec.monitoring_table, due + dt.timedelta(days=3)) is None
    verdicts = {d: monitoring.retrain_verdict(eng, churn_spec.monitoring_table, d)["status"]
                for d in (first, due + dt.timedelta(days=1))}
    assert verdicts == {first: "scheduled", due + dt.timedelta(days=1): "requested"}
    rows = pd.read_sql(f"SELECT * FROM {churn_spec.monitoring_table} WHERE metric = 'retrain_scheduled'", eng)
    assert sorted(rows.status.tolist()) == ["requested", "scheduled", "scheduled", "scheduled"]


# Realized performance of model versions after a drift -----------------------------------------------------------

SCORED = [dt.date(2026, 6, 1), dt.date(2026, 6, 8), dt.date(2026, 6, 15)]  # labels mature by 07-15
AS_OF = dt.date(2026, 7, 16)  # the generated data ends on 07-19


def _labels_by_hand(landing_root: Path, customers: list[str], day: dt.date, horizon: int) -> np.ndarray:
    churn = pd.concat(pd.read_parquet(p) for p in sorted((landing_root / "churn_events").glob("dt=*/*.parquet")))
    start = pd.Timestamp(day, tz="UTC")
    within = churn[(churn.churn_ts >= start) & (churn.churn_ts < start + pd.Timedelta(days=horizon))]
    return np.isin(customers, within.customer_id.to_numpy()).astype(int)


def _write_scores(eng, spec, rows: pd.DataFrame) -> None:
    import pyarrow as pa

    columns = st.score_table_columns(spec)
    st.ensure_table(eng, spec.score_table, columns)
    schema = st.arrow_schema(columns)
    for day, part in rows.groupby("as_of_date"):
        n = len(part)
        data = {f.name: [None] * n for f in schema}
        data.update({"customer_id": part.customer_id.tolist(), "as_of_date": [day] * n,
                     "model_role": part.model_role.tolist(), "score": part.score.tolist(), "risk_decile": [1] * n,
                     "risk_band": ["low"] * n, "plan": ["basic"] * n, "region": ["north"] * n,
                     "age_band": ["25-34"] * n, "reasons_exact": [False] * n, "model_name": ["churn"] * n,
                     "model_version": part.model_version.tolist(), "airflow_run_id": ["r"] * n,
                     "scored_at": [pd.Timestamp("2026-07-01", tz="UTC")] * n})
        staging = wh.staging_name(spec.score_table, day, "t")
        st.sql_table(staging, columns, keyed=False, day=day).create(eng)
        wh.bulk_load(eng, staging, [pa.RecordBatch.from_pydict(data, schema=schema)], schema)
        wh.publish_partition(eng, spec.score_table, staging, day)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_realized_auc_of_each_version_after_a_drift(churn_spec, training_landing, isolated_home, warehouse_url):
    """v1 scores three dates after a drift, v2 (its retraining) the last two in shadow; the step reports each
    version's ROC AUC on every matured date (pooled) and on the dates both scored (paired), as sklearn does on labels
    read straight from the generated churn events."""
    from sklearn.metrics import roc_auc_score

    settings = isolated_home(warehouse_url=warehouse_url, landing_url=training_landing.url)
    root = Path(training_landing.url)
    customers = pd.read_parquet(root / "customers" / "dt=2026-01-01").customer_id.to_numpy()[:600]
    rng = np.random.default_rng(3)
    frames, truth = [], {}
    for day in SCORED:
        y = _labels_by_hand(root, list(customers), day, churn_spec.horizon_days)
        truth[day] = y
        for version, role, signal in ((1, "champion", 0.8), (2, "challenger", 2.0)):
            if version == 2 and day == SCORED[0]:
                continue  # v2 was trained after the first post-drift date
            p = 1 / (1 + np.exp(-(signal * y + rng.normal(0, 1, len(y)) - 2)))
            frames.append(pd.DataFrame({"customer_id": customers, "as_of_date": day, "model_role": role,
                                        "model_version": version, "score": p, "label": y}))
    scores = pd.concat(frames, ignore_index=True)
    assert scores.label.sum() > 20, "the generated data has churners in these windows"
    eng = wh.engine(settings.warehouse_url)
    _write_scores(eng, churn_spec, scores)
    _monitor(churn_spec, settings, SCORED[0], DRIFT)  # the drift is first seen on the first scored date

    performance = monitoring.realized_performance(churn_spec, settings, AS_OF)
    assert performance.drift_since == SCORED[0]
    got = {(e["model_version"], e["scope"]): e for e in performance.since_drift}
    assert set(got) == {(1, "pooled"), (2, "pooled"), (1, "paired"), (2, "paired")}
    paired_days = SCORED[1:]
    for (version, scope), entry in got.items():
        part = scores[scores.model_version == version]
        if scope == "paired":
            part = part[part.as_of_date.isin(paired_days)]
        assert entry["rows"] == len(part) and entry["positives"] == part.label.sum()
        assert entry["roc_auc"] == pytest.approx(roc_auc_score(part.label, part.score), abs=1e-12)
        assert entry["days"] == part.as_of_date.nunique()
    assert got[(2, "paired")]["roc_auc"] > got[(1, "paired")]["roc_auc"]  # the stronger signal shows
    # the figures reach the monitoring table
    drift = DriftComputed(as_of=AS_OF, model_version=1, summary=CALM, test_metrics={})
    decision = monitoring.decide_retrain(churn_spec, settings, drift, performance, training_active=False)
    monitoring.publish_monitoring(churn_spec, settings, drift, performance, decision, "r")
    table = pd.read_sql(f"SELECT * FROM {churn_spec.monitoring_table} WHERE metric LIKE 'realized_roc_auc_since%'", eng)
    assert len(table) == 4 and set(table.model_version) == {1, 2}
    # dates whose labels have not matured are refused, with what to do
    from batchml.drift import MonitoringError
    from batchml.realized import realized_by_version

    with pytest.raises(MonitoringError, match="compare dates up to 2026-06-16"):
        realized_by_version(churn_spec, eng, root, [dt.date(2026, 6, 20)], AS_OF)
