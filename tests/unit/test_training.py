"""Tuning: the trial and time budgets hold, every study starts from the known-good settings (so the tuned model
never scores below the untuned reference on what it tunes on), small random splits tune on folds of the train +
validation rows, and a time split is never shuffled into folds."""

from pathlib import Path

import numpy as np
import pytest

from batchml.datasets import LABEL, WEIGHT, TrainingSet, tuning_sample
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


def test_the_tuning_sample_keeps_every_positive_and_the_weighted_class_balance():
    import pandas as pd

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(size=100_000), LABEL: (rng.random(100_000) < 0.03).astype("int8")})
    sample = tuning_sample(frame, 10_000, seed=1)
    positives = int(frame[LABEL].sum())
    assert abs(len(sample) - 10_000) < 400
    assert int(sample[LABEL].sum()) == positives  # the rare class whole
    negatives = sample[sample[LABEL] == 0]
    assert set(sample.loc[sample[LABEL] == 1, WEIGHT]) == {1.0}
    # each kept negative stands for 1 / share of them: the weighted sum is the full split's count (within noise)
    assert negatives[WEIGHT].sum() == pytest.approx(len(frame) - positives, rel=0.03)
    pd.testing.assert_frame_equal(sample, tuning_sample(frame, 10_000, seed=1))  # seeded
    # rows already weighted (training.negative_sample) keep their weight, times the new one
    weighted = frame.assign(**{WEIGHT: np.where(frame[LABEL] == 1, 1.0, 10.0)})
    assert tuning_sample(weighted, 10_000, seed=1)[WEIGHT].sum() == pytest.approx(
        weighted[WEIGHT].sum(), rel=0.03)
    # many positives: the same share of both classes, the rate unchanged and no weights needed
    balanced = frame.assign(**{LABEL: (rng.random(100_000) < 0.4).astype("int8")})
    even = tuning_sample(balanced, 10_000, seed=1)
    assert WEIGHT not in even.columns and even[LABEL].mean() == pytest.approx(0.4, abs=0.02)
    assert tuning_sample(frame, 200_000, seed=1) is frame  # not larger: as it is


def test_trials_fit_the_tuning_sample_and_the_best_settings_are_refitted_on_all_train_rows(tiny_training_set,
                                                                                          tiny_spec):
    ts = tiny_training_set
    n_train = len(ts.frames["train"])
    tuning = tiny_spec.training.tuning.model_copy(update={"sample_rows": max(n_train // 4, 1_000)})
    spec = tiny_spec.model_copy(update={"training": tiny_spec.training.model_copy(update={"tuning": tuning})})
    assert n_train > tuning.sample_rows, "the tiny set must be larger than the sample for this test to mean anything"
    lgbm = next(c for c in spec.training.candidates if c.kind == "lightgbm")
    tuned = tune_candidate(lgbm, ts, spec, trials=2)
    assert tuned.model.info["trial_train_rows"] < n_train
    # the first trial is the reference preset fitted on the sample: not the score of the reference on all rows
    sampled = TrainingSet({**ts.frames, "train": tuning_sample(ts.frames["train"], tuning.sample_rows, tuning.seed)},
                          ts.features, ts.categorical)
    on_sample = fit_candidate(lgbm, PRESETS["lightgbm"][0], sampled, 42, None)
    assert tuned.trials[0]["value"] == pytest.approx(
        metric_value("roc_auc", ts.y("valid"), on_sample.raw_proba(ts.X("valid"))), abs=1e-12)
    # the returned model is the best settings refitted on every train row: what fit_candidate gives on the full set
    best = tuned.trials[int(np.argmax([t["value"] for t in tuned.trials]))]
    full = fit_candidate(lgbm, best["params"], ts, 42, None if best["preset"] is not None else
                         spec.training.tuning.early_stopping_rounds)
    p_test = tuned.model.predict_proba(ts.frames["test"])
    assert np.allclose(p_test, full.predict_proba(ts.frames["test"]))


def test_without_a_tuning_sample_the_best_trial_is_the_final_model_not_fitted_twice(tiny_training_set, tiny_spec,
                                                                                     monkeypatch):
    import batchml.training as training

    fits = []
    real_fit = training.fit_candidate
    monkeypatch.setattr(training, "fit_candidate", lambda *a, **k: fits.append(a[2]) or real_fit(*a, **k))
    ts = tiny_training_set
    xgb = next(c for c in tiny_spec.training.candidates if c.kind == "xgboost")
    tuned = tune_candidate(xgb, ts, tiny_spec, trials=3)
    assert len(fits) == 3 and all(f is ts for f in fits)  # one fit per trial, none after them
    assert tuned.on_sample is None and tuned.model.info["fitted_rows"] == len(ts.frames["train"])
    best = tuned.trials[int(np.argmax([t["value"] for t in tuned.trials]))]
    again = real_fit(xgb, best["params"], ts, 42, None if best["preset"] is not None else
                     tiny_spec.training.tuning.early_stopping_rounds)
    assert np.allclose(tuned.model.predict_proba(ts.frames["test"]), again.predict_proba(ts.frames["test"]))


def _sampled_spec(spec, n_train: int):
    tuning = spec.training.tuning.model_copy(update={"sample_rows": max(n_train // 4, 1_000)})
    return spec.model_copy(update={"training": spec.training.model_copy(update={"tuning": tuning})})


def test_with_a_tuning_sample_only_the_selected_candidate_and_the_baseline_are_refitted_on_every_row(
        tiny_spec, tiny_lake, tmp_path):
    import json

    import joblib

    from batchml.datasets import prepare_training_set
    from batchml.evaluation import evaluate
    from batchml.metrics import headline
    from batchml.settings import Settings
    from batchml.training import train_candidates
    from sample_data import TINY_TRAINING_DATE

    features_root, raw_root = tiny_lake
    settings = Settings(data_root=features_root.parent, landing_url=str(raw_root))
    ref = prepare_training_set(tiny_spec, settings, TINY_TRAINING_DATE, tmp_path / "run")
    n_train = ref.rows["train"]
    spec = _sampled_spec(tiny_spec, n_train)
    sample_rows = spec.training.tuning.sample_rows
    assert n_train > sample_rows
    selected = train_candidates(spec, ref, trials=2, timeout=None)
    folder = Path(ref.run_dir)
    summary = json.loads((folder / "candidates.json").read_text())
    fitted = {c["name"]: c["fitted_rows"] for c in summary["candidates"]}
    sample_size = len(tuning_sample(TrainingSet.load(folder / "data").frames["train"], sample_rows, spec.training.tuning.seed))
    assert fitted[selected.selected] == fitted[spec.training.baseline] == n_train
    others = set(fitted) - {selected.selected, spec.training.baseline}
    assert others and all(fitted[name] == sample_size for name in others)
    for name in fitted:  # what is saved is what the summary says
        assert joblib.load(folder / f"candidate_{name}.joblib").info["fitted_rows"] == fitted[name]
    on_sample = joblib.load(folder / f"candidate_{selected.selected}_on_sample.joblib")
    assert on_sample.info["fitted_rows"] == sample_size

    # the untuned references are fitted on the same sample and compared with the tuned settings fitted on it
    evaluate(spec, selected)
    references = json.loads((folder / "evaluation.json").read_text())["references"]
    assert {r["fitted_rows"] for r in references["rows"]} == {sample_size}
    assert "tuning sample" in references["where"]
    ts = TrainingSet.load(folder / "data")
    assert references["roc_auc"] == pytest.approx(
        headline(ts.y("test"), on_sample.predict_proba(ts.frames["test"]))["roc_auc"], abs=1e-12)
    # the references the studies' first trials fitted are reused: exactly what fitting them again gives
    reused = sorted(f.name for f in folder.glob("reference_*.joblib"))
    assert reused == sorted(f"reference_{c.kind}.joblib" for c in spec.training.candidates if not c.params)
    again = untuned_references(spec, ts, None, sample_rows)
    assert [r["test"]["roc_auc"] for r in references["rows"]] == pytest.approx(
        [r["test"]["roc_auc"] for r in again], abs=1e-12)


def test_without_a_sample_the_references_are_the_first_trials_on_every_train_row(tiny_spec, tiny_lake, tmp_path):
    """With no tuning sample the studies' first trials fit the untuned presets on the whole train split: the
    evaluation reuses them, and they score exactly what fitting the references again gives."""
    import json

    from batchml.datasets import prepare_training_set
    from batchml.evaluation import evaluate
    from batchml.settings import Settings
    from batchml.training import train_candidates, tuning_folds
    from sample_data import TINY_TRAINING_DATE

    features_root, raw_root = tiny_lake
    settings = Settings(data_root=features_root.parent, landing_url=str(raw_root))
    ref = prepare_training_set(tiny_spec, settings, TINY_TRAINING_DATE, tmp_path / "run")
    folder = Path(ref.run_dir)
    ts = TrainingSet.load(folder / "data")
    assert tiny_spec.training.tuning.sample_rows is None and tuning_folds(tiny_spec, ts) is None
    evaluate(tiny_spec, train_candidates(tiny_spec, ref, trials=2, timeout=None))
    reused = sorted(f.name for f in folder.glob("reference_*.joblib"))
    assert reused == sorted(f"reference_{c.kind}.joblib" for c in tiny_spec.training.candidates if not c.params)
    references = json.loads((folder / "evaluation.json").read_text())["references"]
    assert {r["fitted_rows"] for r in references["rows"]} == {ref.rows["train"]}
    again = untuned_references(tiny_spec, ts, None)
    assert [r["test"]["roc_auc"] for r in references["rows"]] == pytest.approx(
        [r["test"]["roc_auc"] for r in again], abs=1e-12)
