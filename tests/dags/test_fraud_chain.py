"""The fraud chain (a short-horizon variant of specs/fraud.yaml, issue 17) run by a real Airflow (dag.test) on small
generated card-fraud data. Training: the missing daily feature partitions are built, labels read only once matured,
the train split down-sampled with weights, the test days scored at the alert budget next to the logistic and rule
baselines, and the gate decides on PR AUC and recall at the budget. Then every transaction of two days is scored
into `fraud_scores` with reason codes, the alerts view holds each day's budget, and monitoring reports the alert rate
and, once chargebacks have matured, the realized fraud rate."""

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
import yaml

from dagtest import run_for_day

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.gx, pytest.mark.mlflow]

REPO = Path(__file__).resolve().parents[2]


def _short_spec(folder: Path):
    """The fraud spec with a 7-day horizon and short histories, so that 40 days of data train and test a model."""
    from batchml.specs import load_spec

    data = yaml.safe_load((REPO / "specs" / "fraud.yaml").read_text())
    data["label"]["horizon_days"] = 7
    card, merchant = data["features"]["history"]
    card.update(hours=[1, 24], lookback_days=3, usual={"column": "amount", "days": 7})
    merchant["label_rate"] = {"days": 7, "prior": 50}
    rule = data["training"]["rules"]["unusual_amount_new_merchant"]
    rule["above"] = {"card_amount_ratio_7d": 3, "card_first_merchant_id": 0.5}
    rule["rank_by"] = "card_amount_ratio_7d"
    data["training"].update(split={"every_days": 1, "train": 6, "validation": 2, "test": 2, "purge": False},
                            tuning={"trials": 2, "timeout_seconds": 30, "metric": "pr_auc"},
                            confidence={"resamples": 50}, shap_sample=200)
    data["training"]["gate"]["floors"] = {"pr_auc": 0.01}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fraud.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_spec(folder / "fraud.yaml")


def test_fraud_chain_trains_on_the_budget_scores_every_transaction_and_monitors_alerts(airflow_db, isolated_home,
                                                                                       tmp_path):
    from batchml.fraud_data import DEFAULT_CONFIG, generate_fraud_data
    from batchml.partitions import snapshot_plan
    from batchml.pipelines.training import build_training_dag
    from batchml.storage import Landing, feature_partition_dir

    cfg = dataclasses.replace(DEFAULT_CONFIG, cards=600, merchants=150, transactions_per_day=1500, days=40,
                              fraud_rate=0.02, seed=7)
    landing = Landing(str(tmp_path / "landing"))
    generate_fraud_data(cfg, landing)
    training_date = cfg.end + dt.timedelta(days=1)
    spec = _short_spec(tmp_path / "specs")
    settings = isolated_home(landing_url=landing.url, specs_dir=tmp_path / "specs")

    run = run_for_day(build_training_dag(spec, settings), training_date)
    assert run.state == "success", run.states
    result = run.value("register_and_gate")
    for s in snapshot_plan(spec, training_date).all:  # one feature partition per day, built by the training run
        assert (feature_partition_dir(settings.features_root, "fraud", s) / "part-0.parquet").exists()
    folder = Path(run.value("build_training_set")["run_dir"])
    lineage = json.loads((folder / "data" / "training_set.json").read_text())["lineage"]
    assert lineage["negative_sample"] == 0.1 and min(lineage["snapshots"]["test"]) > max(lineage["snapshots"]["train"])
    train = pd.read_parquet(folder / "data" / "train.parquet")
    assert set(train.weight) == {1.0, 10.0} and train.loc[train.label == 1, "weight"].eq(1.0).all()
    assert lineage["label_rate"]["train"] == pytest.approx(train.label.sum() / train.weight.sum(), abs=1e-5)

    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["selected_info"]["weighted"]
    new, base = evaluation["test_metrics"], evaluation["baseline"]["test_metrics"]
    rule = evaluation["rules"]["unusual_amount_new_merchant"]
    test_days = len(lineage["snapshots"]["test"])
    for figures in (new, base, rule):
        assert 0 <= figures["recall_at_budget"] <= 1 and 0 < figures["alerts"] <= test_days * 0.005 * 2000
    assert new["pr_auc"] > new["base_rate"], "the model ranks frauds above the base rate"
    # the gate compared the new model with both baselines on both metrics, and says so
    reasons = " | ".join(result["reasons"])
    if result["verdict"] == "rejected":
        assert "does not beat baseline" in reasons, reasons
    else:
        for name in ("baseline (logistic)", "rule unusual_amount_new_merchant"):
            for metric in ("pr_auc", "recall_at_budget"):
                assert f"beats baseline {name} on {metric}" in reasons, reasons
    assert Path(result["model_card"]).exists()
    if result["verdict"] == "rejected":  # small data: an admin promotes it by hand, as the model_admin DAG would
        from batchml import registry

        registry.promote(registry.connect(settings), "fraud", result["version"])

    # scoring: every transaction of the newest day (its partition built by the feature DAG) and of the day whose
    # chargebacks have just matured (built by the training run)
    import sqlalchemy as sa

    from batchml.pipelines.features import build_dag as build_features
    from batchml.pipelines.monitoring import build_dag as build_monitoring
    from batchml.pipelines.scoring import build_dag as build_scoring

    assert run_for_day(build_features(spec, settings), training_date).state == "success"
    matured_day = training_date - dt.timedelta(days=spec.horizon_days)
    assert matured_day in snapshot_plan(spec, training_date).all
    eng = sa.create_engine(settings.warehouse_url)
    for day in (matured_day, training_date):
        scored = run_for_day(build_scoring(spec, settings), day)
        assert scored.state == "success", scored.states
        features = pd.read_parquet(feature_partition_dir(settings.features_root, "fraud", day) / "part-0.parquet")
        rows = pd.read_sql(sa.text("SELECT * FROM fraud_scores WHERE as_of_date = :d AND model_role = 'champion'"),
                           eng, params={"d": day.isoformat()})
        assert sorted(rows.transaction_id) == sorted(features.transaction_id), "every transaction of the day, once"
        assert rows.score.between(0, 1).all()
        # exact reasons for the top 1% (the spec's exact_share), none below it (others: none); a linear champion's
        # contributions are exact and cheap, so it explains every row
        assert rows.loc[~rows.reasons_exact.astype(bool), "reason_1"].isna().all()
        linear = evaluation["selected_info"]["kind"] == "logistic_regression"
        assert rows.reasons_exact.all() if linear else rows.reasons_exact.mean() <= 0.05
        alerts = pd.read_sql(sa.text("SELECT * FROM fraud_scores_alerts WHERE as_of_date = :d"), eng,
                             params={"d": day.isoformat()})
        assert len(alerts) == -(-len(rows) * 5 // 1000), "the day's top 0.5%, rounded up"
        assert list(alerts.score) == sorted(rows.score, reverse=True)[: len(alerts)], "most suspicious first"
        assert alerts.reason_1.notna().all(), "every alert says why"

    monitored = run_for_day(build_monitoring(spec, settings), training_date)
    assert monitored.state == "success", monitored.states
    figures = pd.read_sql(sa.text("SELECT * FROM fraud_monitoring WHERE as_of_date = :d"), eng,
                          params={"d": training_date.isoformat()}).set_index("metric")
    # the alert rate: the share of the day's transactions at or above the threshold of the test days' budget
    threshold = monitored.value("compute_drift")["test_metrics"]["budget_threshold"]
    today = pd.read_sql(sa.text("SELECT score FROM fraud_scores WHERE as_of_date = :d AND model_role = 'champion'"),
                        eng, params={"d": training_date.isoformat()})
    assert figures.loc["alert_rate", "value"] == pytest.approx((today.score >= threshold).mean())
    assert figures.loc["alert_rate", "status"] in ("ok", "alert")
    # the realized fraud rate of the day whose 7-day chargebacks have matured, against the landed chargebacks
    events = pd.read_parquet(feature_partition_dir(settings.features_root, "fraud", matured_day) / "part-0.parquet",
                             columns=["transaction_id", "event_ts"])
    charged = ds.dataset(f"{landing.url}/chargebacks", format="parquet", partitioning="hive").to_table().to_pandas()
    charged = charged[charged.reason.str.startswith("fraud_")]
    joined = events.merge(charged, on="transaction_id")
    for column in ("event_ts", "chargeback_ts"):  # as UTC instants, whatever the files' timezone annotation
        joined[column] = pd.to_datetime(joined[column], utc=True)
    joined = joined[joined.chargeback_ts < pd.Timestamp(training_date.isoformat(), tz="UTC")]
    frauds = joined[(joined.chargeback_ts >= joined.event_ts)
                    & (joined.chargeback_ts < joined.event_ts + pd.Timedelta(days=7))].transaction_id.nunique()
    realized = figures[figures.model_role == "champion"]
    assert realized.loc["realized_positives", "value"] == frauds > 0
    assert realized.loc["realized_label_rate", "value"] == pytest.approx(frauds / len(events))
    assert 0 <= realized.loc["realized_recall_at_budget", "value"] <= 1
    assert matured_day.isoformat() in realized.loc["realized_label_rate", "detail"]
    report = Path(monitored.value("publish_monitoring")["report"]).read_text()
    assert "Alert rate" in report and "recall at budget" in report
