"""Training and gating a rare-event model the way a fraud team works (issue 17): metrics at a daily alert budget,
rule baselines, negative down-sampling with the weights put back, labels of events only once matured, and a gate
that refuses a model no better than its baselines."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from batchml.datasets import (
    AS_OF_COLUMN,
    LABEL,
    WEIGHT,
    TrainingDataError,
    TrainingSet,
    downsample_negatives,
    event_labels,
    label_snapshots,
)
from batchml.metrics import budget_metrics, headline, rule_scores
from batchml.specs import load_spec
from batchml.storage import Landing, day_range

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "specs" / "fraud.yaml"


def test_recall_and_precision_at_a_daily_budget_by_hand():
    # day a: 200 rows, budget 2% -> the 4 highest scores; day b: 100 rows -> the 2 highest
    days = np.array(["a"] * 200 + ["b"] * 100)
    p = np.linspace(0.01, 0.5, 300)[::-1].copy()  # highest first within each day
    y = np.zeros(300, dtype=int)
    y[[0, 2, 50]] = 1       # day a: 2 positives among its top 4, one far below
    y[[200, 299]] = 1       # day b: 1 positive among its top 2, one at the bottom
    got = budget_metrics(y, p, days, 0.02)
    assert got["alerts"] == 6
    assert got["recall_at_budget"] == pytest.approx(3 / 5)
    assert got["precision_at_budget"] == pytest.approx(3 / 6)
    # a day's budget is rounded up (a day of 10 rows at 0.5% still alerts one), and without positives recall is 0
    assert budget_metrics(np.zeros(10), np.arange(10.0), np.zeros(10), 0.005)["alerts"] == 1
    assert budget_metrics(np.zeros(10), np.arange(10.0), np.zeros(10), 0.005)["recall_at_budget"] == 0.0
    # each day has its own budget: one busy day does not eat another's alerts
    shifted = budget_metrics(y, np.where(days == "a", p + 10, p), days, 0.02)
    assert shifted == {**got, "budget_threshold": pytest.approx(got["budget_threshold"] + 5)}
    assert "recall_at_budget" in headline(y, p, days, 0.02) and "recall_at_budget" not in headline(y, p)


def test_a_rule_ranks_flagged_rows_first_then_by_its_feature():
    frame = pd.DataFrame({"ratio": [5.0, 1.0, 9.0, 4.0, 0.5], "new": [1, 1, 0, 1, 0], "channel": list("aabab")})
    p = rule_scores(frame, {"ratio": 3, "new": 0.5}, {}, {}, "ratio")
    assert list(np.argsort(-p)) == [0, 3, 2, 1, 4]  # flagged (5, 4) above the rest, each by ratio
    assert ((p >= 0) & (p < 1)).all() and (p[[0, 3]] >= 0.5).all() and (p[[1, 2, 4]] < 0.5).all()
    assert list(rule_scores(frame, {}, {"ratio": 2}, {"channel": "b"}) >= 0.5) == [False, False, False, False, True]


def test_down_sampled_negatives_carry_weights_that_put_the_base_rate_back():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=20_000), LABEL: (rng.random(20_000) < 0.01).astype("int8")})
    sampled = downsample_negatives(frame, 0.1, seed=3)
    assert sampled[LABEL].sum() == frame[LABEL].sum(), "every positive is kept"
    assert len(sampled) < 0.15 * len(frame)
    assert sampled[WEIGHT].sum() == pytest.approx(len(frame), rel=0.03)
    assert np.average(sampled[LABEL], weights=sampled[WEIGHT]) == pytest.approx(frame[LABEL].mean(), rel=0.05)
    pd.testing.assert_frame_equal(sampled, downsample_negatives(frame, 0.1, seed=3))  # seeded


def test_a_model_fitted_on_weighted_down_sampled_rows_stays_calibrated():
    """The weights put the class balance back: the mean predicted probability on untouched rows is the real base
    rate; the same rows unweighted overestimate it about tenfold."""
    from batchml.models import fit_candidate
    from batchml.specs import CandidateSpec

    rng = np.random.default_rng(1)

    def rows(n):
        x = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(x * 1.5 - 5)))).astype("int8")
        return pd.DataFrame({"x": x, LABEL: y})

    train, valid = rows(60_000), rows(60_000)
    sampled = downsample_negatives(train, 0.1, seed=0)
    cand = CandidateSpec(name="lr", kind="logistic_regression")
    weighted = fit_candidate(cand, {}, TrainingSet({"train": sampled, "valid": valid, "test": valid}, ["x"], []),
                             0, None)
    plain = fit_candidate(cand, {}, TrainingSet({"train": sampled.drop(columns=WEIGHT), "valid": valid,
                                                 "test": valid}, ["x"], []), 0, None)
    base = valid[LABEL].mean()
    assert weighted.info["weighted"] and not plain.info["weighted"]
    assert weighted.predict_proba(valid).mean() == pytest.approx(base, rel=0.15)
    assert plain.predict_proba(valid).mean() > 5 * base


def _land_chargebacks(root: Path, rows: list[dict], days: list[dt.date]) -> Path:
    schema = pa.schema([("chargeback_id", pa.string()), ("transaction_id", pa.string()),
                        ("transaction_ts", pa.timestamp("us", tz="UTC")), ("card_id", pa.string()),
                        ("merchant_id", pa.string()), ("chargeback_ts", pa.timestamp("us", tz="UTC")),
                        ("reason", pa.string())])
    landing = Landing(str(root))
    for day in days:
        part = [r for r in rows if r["chargeback_ts"].date() == day]
        landing.write_partition_file("chargebacks", day, "part-0.parquet", pa.Table.from_pylist(part, schema=schema))
    return root


def test_event_labels_are_outcomes_within_the_horizon_read_before_the_training_date(tmp_path):
    spec = load_spec(FRAUD)  # horizon 30 days, fraud reasons only
    t0 = pd.Timestamp("2026-03-01 12:00", tz="UTC")
    training_date = dt.date(2026, 4, 5)
    events = pd.DataFrame({"transaction_id": ["t1", "t2", "t3", "t4", "t5", "t6"], "event_ts": [t0] * 6})

    def cb(tx, after_days, reason="fraud_card_not_present"):
        at = (t0 + pd.Timedelta(days=after_days)).to_pydatetime()
        return {"chargeback_id": f"cb_{tx}_{after_days}", "transaction_id": tx, "transaction_ts": t0.to_pydatetime(),
                "card_id": "c", "merchant_id": "m", "chargeback_ts": at, "reason": reason}

    rows = [cb("t1", 3), cb("t2", 30), cb("t3", 2, "not_received"), cb("t4", -0.5), cb("t5", 29.99),
            cb("t6", 40)]  # t6's chargeback lands after the training date: never read
    root = _land_chargebacks(tmp_path / "landing", rows, day_range(dt.date(2026, 2, 28), dt.date(2026, 4, 12)))
    labels = event_labels(spec, root, events, training_date)
    # t1: within 30 days; t2: exactly at the horizon (outside); t3: not a fraud reason; t4: before the event;
    # t5: just inside
    assert list(labels) == [1, 0, 0, 0, 1, 0]
    with pytest.raises(TrainingDataError, match="mature 30 days later, after the training date"):
        event_labels(spec, root, events, dt.date(2026, 3, 31))
    # what realized performance reads (the positives of a scored date: the events of the day before it) follows
    # the same definition: the fraud reasons only, within the horizon, never a late chargeback
    scored = dt.date(2026, 3, 2)
    positives = label_snapshots(spec, root, [scored], training_date)
    assert sorted(positives.transaction_id) == ["t1", "t5"] and set(positives[AS_OF_COLUMN]) == {scored}
    assert label_snapshots(spec, root, [dt.date(2026, 3, 3)], training_date).empty  # no events of 03-02


def _gate_spec(tmp_path: Path, **gate) -> object:
    data = yaml.safe_load(FRAUD.read_text())
    data["training"]["gate"].update(gate)
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_spec(path)


def test_the_gate_rejects_a_model_that_does_not_beat_every_baseline(tmp_path):
    from batchml.gate import decide

    spec = _gate_spec(tmp_path)  # floors pr_auc 0.1, recall_at_budget 0.2; beat the baselines on both
    new = {"pr_auc": 0.40, "recall_at_budget": 0.35, "roc_auc": 0.9}
    baselines = {"baseline (logistic)": {"pr_auc": 0.20, "recall_at_budget": 0.25},
                 "rule unusual_amount_new_merchant": {"pr_auc": 0.05, "recall_at_budget": 0.30}}
    ok = decide(spec, new, None, None, None, baselines)
    assert ok.verdict == "champion", ok.reasons
    assert any("beats baseline rule unusual_amount_new_merchant on recall_at_budget" in r for r in ok.reasons)
    worse = decide(spec, {**new, "recall_at_budget": 0.28}, None, None, None, baselines)
    assert worse.verdict == "rejected"
    assert worse.reasons == ["does not beat baseline rule unusual_amount_new_merchant on recall_at_budget "
                             "(0.2800 vs 0.3000)"]
    floor = decide(spec, {**new, "recall_at_budget": 0.1}, None, None, None, baselines)
    assert floor.verdict == "rejected" and any("recall_at_budget" in r and "floor" in r for r in floor.reasons)


def test_the_alert_rate_is_the_share_above_the_test_days_threshold_and_flags_a_shift():
    """A fixed budget alerts the same share every day; the share of a date scoring at or above the threshold the
    model alerted at on its test days is what moves when scores shift, flagged outside budget / ratio..budget x ratio."""
    from batchml.drift import build_profile, feature_drift

    spec = load_spec(FRAUD)
    budget, ratio = spec.training.alert_budget, spec.monitoring.alert_rate_ratio
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"amount": rng.gamma(2, 30, 20_000)})
    ref_scores = rng.beta(1, 60, 20_000)
    threshold = float(np.quantile(ref_scores, 1 - budget))
    profile, sample = build_profile(reference, [], ref_scores, [], {"budget_threshold": threshold})

    def alert_rate(scores):
        figures = feature_drift(spec, profile, sample, reference.iloc[: len(scores)], scores).by_metric("alert_rate")
        assert len(figures) == 1
        return figures[0]

    same = alert_rate(rng.beta(1, 60, 10_000))
    assert same.value == pytest.approx(budget, rel=0.3) and same.status == "ok"
    assert same.threshold == pytest.approx(budget * ratio) and f"{threshold:.4f}" in same.detail
    hotter = alert_rate(rng.beta(1, 60, 10_000) * 3)  # every score tripled: many more rows above the threshold
    assert hotter.value > budget * ratio and hotter.status == "alert"
    assert alert_rate(rng.beta(1, 60, 10_000) / 3).status == "alert"  # and far fewer
    # a use case without a budget (churn) has no alert rate
    profile_without = {**profile, "test_metrics": {}}
    assert feature_drift(spec, profile_without, sample, reference, ref_scores).by_metric("alert_rate") == []
