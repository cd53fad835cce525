"""Drift detection on generated data, day after day: no false alarm while the data is stable, a retraining scheduled
within a few days once the drift knob turns on (for the day its labels mature), naming the drifted features."""

import datetime as dt
from pathlib import Path

import joblib
import pandas as pd
import pytest

from sample_data import SMALL_TRAINING_DATE, copy_training_snapshots

pytestmark = [pytest.mark.spark, pytest.mark.mlflow]

T = SMALL_TRAINING_DATE  # the model is trained on data before this date
STABLE = [dt.date(2026, 6, 12) + dt.timedelta(days=2 * i) for i in range(12)]  # every other day, 06-12 .. 07-04
DRIFTING = [dt.date(2026, 7, 5) + dt.timedelta(days=i) for i in range(7)]  # the knob turns on on 07-05


@pytest.fixture(scope="module")
def daily_decisions(spark, small_training_spec, training_landing, training_snapshots, tmp_path_factory):
    """Train once (before the drift), then compare each day's features and scores with the model's reference."""
    from batchml.datasets import prepare_training_set
    from batchml.drift import drift_summary, feature_drift, load_reference
    from batchml.evaluation import evaluate
    from batchml.features import run_feature_job
    from batchml.monitoring import retrain_decision
    from batchml.settings import Settings
    from batchml.training import train_candidates

    spec = small_training_spec
    root = tmp_path_factory.mktemp("drift")
    settings = Settings(home=root / "home", landing_url=training_landing.url)
    copy_training_snapshots(training_snapshots, settings)
    ref = prepare_training_set(spec, settings, T, root / "run")
    evaluate(spec, train_candidates(spec, ref, trials=2, timeout=None))
    model = joblib.load(root / "run" / "selected.joblib")
    profile, sample = load_reference(root / "run" / "reference")
    decisions = {}
    for day in STABLE + DRIFTING:
        job = run_feature_job(spark, spec, Path(training_landing.url), day, root / "stage" / day.isoformat())
        today = pd.read_parquet(job.staged_file)
        result = feature_drift(spec, profile, sample, today[model.features], model.predict_proba(today))
        summary = drift_summary(spec, profile, result)
        decisions[day] = retrain_decision(spec, day, summary, None, profile["test_metrics"], last_request=None,
                                          training_active=False)
    return decisions


def test_no_false_alarm_while_the_data_is_stable(daily_decisions):
    false_alarms = [d for d in STABLE if daily_decisions[d].request or daily_decisions[d].scheduled_for]
    print(f"\nfalse alarms over {len(STABLE)} stable days: {len(false_alarms)}")
    assert false_alarms == []


def test_drift_schedules_a_retraining_within_a_few_days_naming_the_features(daily_decisions, small_training_spec):
    scheduled = [d for d in DRIFTING if daily_decisions[d].scheduled_for]
    assert scheduled, "the drift was never detected"
    first = scheduled[0]
    print(f"\nretraining scheduled {(first - DRIFTING[0]).days} days after the drift started ({first}), for "
          f"{daily_decisions[first].scheduled_for}")
    assert (first - DRIFTING[0]).days <= 5
    decision = daily_decisions[first]
    # not now: a training run now would learn from labels that matured before the drift
    assert not decision.request
    assert decision.scheduled_for == first + dt.timedelta(days=small_training_spec.horizon_days)
    reasons = " ".join(decision.reasons)
    assert "txn_share_channel_app_7d" in reasons or "txn_mean_amount_7d" in reasons, reasons
    assert all(daily_decisions[d].scheduled_for for d in DRIFTING if d >= first)  # it does not flicker off
