"""The model object: it carries its preprocessing, refuses missing columns, and is calibrated only when it helps."""

import numpy as np
import pytest

from batchml.models import calibrate, fit_candidate
from batchml.training import tune_candidate


def test_model_carries_its_preprocessing_and_refuses_missing_columns(tiny_training_set, tiny_spec):
    base = next(c for c in tiny_spec.training.candidates if c.kind == "logistic_regression")
    model = tune_candidate(base, tiny_training_set, tiny_spec, trials=2).model
    test = tiny_training_set.frames["test"]
    shuffled = test[list(reversed(test.columns))]  # column order does not matter, names do
    np.testing.assert_allclose(model.predict_proba(test), model.predict_proba(shuffled))
    unseen = test.copy()
    unseen["tier"] = "enterprise"  # an unseen category is encoded, not a crash
    assert np.isfinite(model.predict_proba(unseen)).all()
    with pytest.raises(Exception, match="lacks the model's feature columns"):
        model.predict_proba(test.drop(columns=["tenure_days"]))


def test_calibration_is_kept_only_when_it_helps(tiny_training_set, tiny_spec):
    base = next(c for c in tiny_spec.training.candidates if c.kind == "logistic_regression")
    model = tune_candidate(base, tiny_training_set, tiny_spec, trials=1).model
    auto = calibrate(model, tiny_training_set, "auto")
    check = auto.info["calibration_check"]
    assert (auto.calibrated is not None) == (check["brier_calibrated"] < check["brier_raw"] * 0.995)
    forced = calibrate(model, tiny_training_set, "isotonic")
    assert forced.calibrated is not None and forced.info["calibration"] == "isotonic"
    assert model.calibrated is None and "calibration" not in model.info  # the input model is not changed


@pytest.mark.parametrize("kind", ["logistic_regression", "xgboost"])
def test_the_calibration_check_is_what_scikit_learn_cross_fits(kind, tiny_training_set, tiny_spec):
    """The check predicts the validation rows once and cross-fits the isotonic map itself; its out-of-sample Brier
    score must be the one of scikit-learn's own cross-fitting of CalibratedClassifierCV over the frozen model
    (which predicts the rows again in every fold)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from batchml.metrics import metric_value

    cand = next(c for c in tiny_spec.training.candidates if c.kind == kind)
    model = fit_candidate(cand, {}, tiny_training_set, 0, None if kind == "logistic_regression" else 10)
    check = calibrate(model, tiny_training_set, "auto").info["calibration_check"]
    X, y = model._frame(tiny_training_set.X("valid")), tiny_training_set.y("valid")
    theirs = cross_val_predict(CalibratedClassifierCV(FrozenEstimator(model.pipeline), method="isotonic"), X, y,
                               cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0), method="predict_proba")
    assert check["brier_calibrated"] == pytest.approx(metric_value("brier", y, theirs[:, 1]), abs=1e-12)
    assert check["brier_raw"] == pytest.approx(metric_value("brier", y, model.raw_proba(X)), abs=1e-12)


@pytest.mark.parametrize(("kind", "last"), [("xgboost", 39), ("lightgbm", 40)])
def test_without_early_stopping_every_tree_counts(kind, last, tiny_training_set):
    from batchml.specs import CandidateSpec

    cand = CandidateSpec(name=kind, kind=kind)
    model = fit_candidate(cand, {"n_estimators": 40}, tiny_training_set, 0, None)
    assert model.info["best_iteration"] == last  # xgboost counts from 0, lightgbm from 1: all 40 trees
    sample = tiny_training_set.frames["test"].head(100)
    contrib = model.contributions(model.transform(sample))
    p = model.raw_proba(sample)
    bias = np.log(p / (1 - p)) - contrib.sum(axis=1)  # contributions of every tree add up to the margin
    np.testing.assert_allclose(bias, bias[0], atol=1e-4)
    assert model.estimator.get_params()["n_jobs"] == 2  # trained on one thread (small data), scores on two
