"""Drift statistics against independent calculations on hand-made data, and the retraining policy."""

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from batchml.drift import bin_shares, category_shares, chi_square, ks, psi, quantile_edges
from batchml.monitoring import retrain_decision, retrain_request
from batchml.retraining import ScheduledRetrain
from batchml.specs import UseCaseSpec

D = dt.date(2026, 7, 10)


def test_psi_matches_the_formula_by_hand():
    ref, cur = [0.25, 0.25, 0.5], [0.5, 0.25, 0.25]
    by_hand = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0 + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi(ref, cur) == pytest.approx(by_hand) == pytest.approx(0.5 * math.log(2))
    assert psi(ref, ref) == 0.0
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(
        0.1 * math.log(0.4 / 0.5) * -1 + (0.1 - 1e-4) * math.log(0.1 / 1e-4))  # empty bins floored at 1e-4


def test_bins_put_values_on_an_edge_in_the_upper_bin():
    assert bin_shares(np.array([1.0, 2.0, 2.5, 3.0, 4.0]), [2.5]).tolist() == [0.4, 0.6]
    assert bin_shares(np.array([np.nan, 1.0]), [0.5]).tolist() == [0.0, 1.0]  # NaN is not counted in a bin
    edges = quantile_edges(np.arange(100, dtype=float))
    assert len(edges) == 9 and bin_shares(np.arange(100, dtype=float), edges).tolist() == [0.1] * 10
    assert len(quantile_edges(np.array([0.0] * 90 + [1.0] * 10))) <= 2  # ties collapse into fewer bins


def test_ks_matches_a_brute_force_ecdf_distance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 300), rng.normal(0.3, 1, 200)
    grid = np.sort(np.concatenate([a, b]))
    brute = max(abs(np.mean(a <= x) - np.mean(b <= x)) for x in grid)
    stat, p = ks(a, b)
    assert stat == pytest.approx(brute)
    assert 0 < p < 0.05


def test_categories_and_chi_square_by_hand():
    shares = category_shares(pd.Series(["a", "a", "b", "z"]), ["a", "b", "c"])
    assert shares.tolist() == [0.5, 0.25, 0.0, 0.25]  # the last bucket holds unseen categories
    counts = np.array([30.0, 70.0])
    stat, p, v = chi_square(np.array([0.5, 0.5]), counts)
    by_hand = (30 - 50) ** 2 / 50 + (70 - 50) ** 2 / 50
    assert stat == pytest.approx(by_hand) and v == pytest.approx(math.sqrt(by_hand / 100))
    assert p < 0.001


def _spec(churn_spec: UseCaseSpec, **retrain) -> UseCaseSpec:
    data = churn_spec.model_dump()
    data["monitoring"]["retrain"].update(retrain)
    return UseCaseSpec.model_validate(data)


CALM = {"score_psi": 0.02, "drifted_important": [], "drifted_important_share": 0.0}
DRIFT = {"score_psi": 0.4, "drifted_important": ["txn_mean_amount_7d", "txn_share_channel_app_7d", "tenure_days"],
         "drifted_important_share": 0.3}


def test_drift_schedules_a_retraining_for_when_its_labels_mature_and_names_the_features(churn_spec):
    decision = retrain_decision(churn_spec, D, DRIFT, None, {"roc_auc": 0.8}, None, training_active=False)
    horizon = churn_spec.horizon_days
    assert not decision.request and decision.scheduled_for == D + dt.timedelta(days=horizon)
    assert decision.drift_since == D
    assert any("score PSI 0.400" in r for r in decision.reasons)
    assert any("txn_mean_amount_7d" in r and "txn_share_channel_app_7d" in r for r in decision.reasons)
    assert any(f"mature on {D + dt.timedelta(days=horizon)}" in r and "old regime only" in r for r in decision.reasons)
    delay = decision.figures["label_delay"]
    assert delay["drift_since"] == D.isoformat() and delay["training_date"] == (D + dt.timedelta(horizon)).isoformat()
    calm = retrain_decision(churn_spec, D, CALM, None, {"roc_auc": 0.8}, None, False)
    assert not calm.request and calm.scheduled_for is None and not calm.reasons


def test_a_scheduled_retraining_is_requested_once_its_labels_have_matured(churn_spec):
    pending = ScheduledRetrain(training_date=D + dt.timedelta(days=30), drift_since=D, scheduled_on=D)
    waiting = retrain_decision(churn_spec, D + dt.timedelta(days=5), DRIFT, None, {}, None, False, pending=pending)
    assert not waiting.request and waiting.scheduled_for == pending.training_date  # no second schedule
    assert any(f"is scheduled for {pending.training_date}" in r for r in waiting.reasons)
    quiet = retrain_decision(churn_spec, D + dt.timedelta(days=20), CALM, None, {}, None, False, pending=pending)
    assert not quiet.request and quiet.scheduled_for == pending.training_date  # the drift passing changes nothing
    busy = retrain_decision(churn_spec, pending.training_date, CALM, None, {}, None, True, pending=pending)
    assert not busy.request and busy.scheduled_for == pending.training_date and "already active" in busy.suppressed
    due = retrain_decision(churn_spec, pending.training_date + dt.timedelta(days=2), CALM, None, {}, None, False,
                           pending=pending)
    assert due.request and due.training_date == pending.training_date and due.drift_since == D
    request = retrain_request(due)
    assert request.training_date == pending.training_date and request.trigger == "drift"
    assert f"drift first seen on {D}" in request.reason and request.figures["label_delay"]["horizon_days"] == 30


def test_the_schedule_reads_back_from_its_record():
    pending = ScheduledRetrain(training_date=D + dt.timedelta(days=30), drift_since=D, scheduled_on=D)
    assert ScheduledRetrain.parse(pending.detail(30)) == pending
    assert ScheduledRetrain.parse("no trigger") is None


def test_a_label_known_when_scoring_has_no_delay(churn_spec):
    """A label column of the snapshot (horizon 0): drift requests a retraining at once."""
    from pathlib import Path

    from batchml.specs import load_spec

    telco = load_spec(Path(__file__).resolve().parents[2] / "specs" / "telco_churn.yaml")
    data = telco.model_dump()
    data["monitoring"]["retrain"]["enabled"] = True
    spec = UseCaseSpec.model_validate(data)
    decision = retrain_decision(spec, D, DRIFT, None, {}, None, False)
    assert decision.request and decision.training_date == D and decision.scheduled_for is None


def test_policy_requests_on_decay(churn_spec):
    decision = retrain_decision(churn_spec, D, CALM, {"roc_auc": 0.70}, {"roc_auc": 0.80}, None, False)
    assert decision.request and "realized ROC AUC 0.700 is 0.100 below" in decision.reasons[0]
    assert decision.training_date == D and decision.trigger == "decay"  # matured labels: no reason to wait
    assert not retrain_decision(churn_spec, D, CALM, {"roc_auc": 0.78}, {"roc_auc": 0.80}, None, False).request


def test_cooldown_suppresses_and_active_training_does_not_stop_a_schedule(churn_spec):
    spec = _spec(churn_spec, cooldown_days=7)
    recent = retrain_decision(spec, D, DRIFT, None, {}, last_request=D - dt.timedelta(days=3), training_active=False)
    assert not recent.request and "cool-down" in recent.suppressed and recent.reasons  # reasons kept for the record
    assert recent.scheduled_for is None
    later = retrain_decision(spec, D, DRIFT, None, {}, last_request=D - dt.timedelta(days=7), training_active=False)
    assert later.scheduled_for == D + dt.timedelta(days=30)
    busy = retrain_decision(spec, D, DRIFT, None, {}, last_request=None, training_active=True)
    assert busy.scheduled_for == D + dt.timedelta(days=30)  # the run it schedules is 30 days away
    decaying = retrain_decision(spec, D, CALM, {"roc_auc": 0.6}, {"roc_auc": 0.8}, None, training_active=True)
    assert not decaying.request and "already active" in decaying.suppressed


def test_broken_data_and_a_disabled_policy_never_trigger(churn_spec):
    broken = retrain_decision(churn_spec, D, DRIFT, None, {}, None, False, data_ok=False)
    assert not broken.request and "not drift" in broken.suppressed and broken.scheduled_for is None
    off = retrain_decision(_spec(churn_spec, enabled=False), D, DRIFT, None, {}, None, False)
    assert not off.request and "recommend only" in off.suppressed and off.scheduled_for is None
