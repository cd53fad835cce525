"""Tuning: the trial and time budgets hold, every study starts from the known-good settings (so the tuned model
never scores below the untuned reference on what it tunes on), small random splits tune on folds of the train +
validation rows, and a time split is never shuffled into folds."""

from pathlib import Path

import numpy as np
import pytest

from batchml.datasets import LABEL
from batchml.metrics import metric_value
from batchml.models import fit_candidate
from batchml.specs import CandidateSpec
from batchml.training import PRESETS, dev_folds, tune_candidate, tuning_folds, untuned_references
from snapshot_tables import accounts, snapshot_spec, training_set


@pytest.fixture(scope="module")
def small_table():
    spec = snapshot_spec()
    return spec, training_set(spec, accounts(rows=1800, seed=1))


def test_tuning_respects_the_trial_budget_and_beats_chance(tiny_training_set, tiny_spec):
    xgb = next(c for c in tiny_spec.training.candidates if c.kind == "xgboost")
    tuned = tune_candidate(xgb, tiny_training_set, tiny_spec, trials=3)
    assert len(tuned.trials) == 3
    assert tuned.model.info["best_iteration"] >= 0
    p = tuned.model.predict_proba(tiny_training_set.frames["test"])
    assert ((0 <= p) & (p <= 1)).all()
    assert metric_value("roc_auc", tiny_training_set.y("test"), p) > 0.7


def test_tuning_respects_the_time_budget(tiny_training_set, tiny_spec):
    lgbm = next(c for c in tiny_spec.training.candidates if c.kind == "lightgbm")
    tuned = tune_candidate(lgbm, tiny_training_set, tiny_spec, trials=1000, timeout=2)
    assert 1 <= len(tuned.trials) < 1000
    # Optuna checks the budget between trials: at most one trial runs past it
    assert tuned.seconds < 2 + max(t["seconds"] for t in tuned.trials) + 1


def test_a_time_split_tunes_on_its_validation_snapshots_starting_from_the_reference(tiny_training_set, tiny_spec):
    ts = tiny_training_set
    assert tuning_folds(tiny_spec, ts) is None  # never shuffled into folds
    lgbm = next(c for c in tiny_spec.training.candidates if c.kind == "lightgbm")
    tuned = tune_candidate(lgbm, ts, tiny_spec, trials=4)
    first = tuned.trials[0]
    assert first["preset"] == 0 and first["params"] == PRESETS["lightgbm"][0]
    # the first trial is exactly the untuned reference: the same settings, all 300 trees, scored on validation
    reference = fit_candidate(CandidateSpec(name="ref", kind="lightgbm"), PRESETS["lightgbm"][0], ts, 42, None)
    assert reference.info["best_iteration"] == 300
    assert first["value"] == pytest.approx(metric_value("roc_auc", ts.y("valid"), reference.raw_proba(ts.X("valid"))),
                                           abs=1e-12)
    assert tuned.score >= first["value"]
    assert tuned.model.info["tuned_on"] == "validation"


def test_small_random_splits_tune_on_folds_of_train_and_validation_only(small_table):
    spec, ts = small_table
    folds = tuning_folds(spec, ts)
    assert folds is not None and folds.k == spec.training.cv_folds
    assert len(folds.frame) == len(ts.frames["train"]) + len(ts.frames["valid"])
    assert not set(folds.frame.account_id) & set(ts.frames["test"].account_id)  # the test split stays out
    for train_idx, test_idx in folds.splits:  # stratified, disjoint, covering every row once
        assert not set(train_idx) & set(test_idx)
        assert abs(folds.frame[LABEL].iloc[test_idx].mean() - folds.frame[LABEL].mean()) < 0.02
    assert sorted(np.concatenate([t for _, t in folds.splits]).tolist()) == list(range(len(folds.frame)))
    big = snapshot_spec({"tuning": {"trials": 3, "cv_below_rows": 1000}})
    assert tuning_folds(big, ts) is None  # as many rows as the limit: one validation split is enough
    never = snapshot_spec({"tuning": {"cv_below_rows": None}})
    assert tuning_folds(never, ts) is None


def test_tuning_on_folds_never_loses_to_the_untuned_references(small_table):
    spec, ts = small_table
    folds = tuning_folds(spec, ts)
    references = {r["kind"]: r for r in untuned_references(spec, ts, dev_folds(ts, folds.k, folds.seed))}
    for cand in spec.training.candidates:
        tuned = tune_candidate(cand, ts, spec, trials=4)
        reference = references[cand.kind]["cv"]
        # the first trial is the reference, on the very same folds: the same figure, computed independently
        assert tuned.trials[0]["value"] == pytest.approx(reference["roc_auc"], abs=1e-12)
        assert tuned.score >= reference["roc_auc"] and tuned.cv["roc_auc"] == tuned.score
        assert tuned.model.info["tuned_on"] == f"{folds.k}-fold CV"
        if cand.kind != "logistic_regression":  # no early stopping on folds: the number of trees is a setting
            assert all("n_estimators" in t["params"] for t in tuned.trials)


def test_a_budget_of_one_trial_is_the_reference(small_table):
    spec, ts = small_table
    tuned = tune_candidate(next(c for c in spec.training.candidates if c.kind == "xgboost"), ts, spec, trials=1)
    assert [t["preset"] for t in tuned.trials] == [0]
    assert tuned.model.info["params"] == PRESETS["xgboost"][0] and tuned.model.info["best_iteration"] == 299


def test_fixed_candidate_settings_win_over_the_presets(small_table):
    spec, ts = small_table
    cand = CandidateSpec(name="lgbm", kind="lightgbm", params={"num_leaves": 7})
    tuned = tune_candidate(cand, ts, spec, trials=1)
    assert tuned.model.info["params"]["num_leaves"] == 7
    assert tuned.model.estimator.get_params()["num_leaves"] == 7


def test_a_time_split_with_folds_is_refused():
    from batchml.errors import SpecError
    from batchml.specs import parse_spec

    path = Path(__file__).parents[1] / "fixtures" / "specs" / "tiny.yaml"
    with pytest.raises(SpecError, match=r"training\.cv_folds: a time split is never shuffled into folds"):
        parse_spec(path.read_text() + "training: {cv_folds: 5}\n", path)
