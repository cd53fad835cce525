"""The per-leaf TreeSHAP tables give the boosters' own exact contributions, for every way a split sends a value."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from batchml import treeshap


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n, f = 6000, 12
    X = rng.normal(size=(n, f))
    X[:, 3] = np.round(X[:, 3])  # exact zeros, for LightGBM's zero-as-missing
    X[:, 4] = rng.integers(0, 5, n)  # a category code, as the trees' encoder gives it
    X[rng.random((n, f)) < 0.08] = np.nan
    y = ((np.nan_to_num(X[:, :4]).sum(axis=1) + 0.5 * (X[:, 4] == 2) + rng.normal(size=n)) > 0.5).astype(int)
    return X, y


@pytest.mark.parametrize("params", [
    {"num_leaves": 31, "n_estimators": 60},                           # missing values take the learnt branch
    {"num_leaves": 63, "n_estimators": 25, "zero_as_missing": True},  # zero and missing take the default branch
    {"num_leaves": 15, "n_estimators": 25, "use_missing": False},     # missing is read as 0.0 and compared
])
def test_lightgbm_tables_equal_pred_contrib(data, params):
    import lightgbm as lgb

    X, y = data
    booster = lgb.LGBMClassifier(verbose=-1, min_child_samples=5, **params).fit(X, y).booster_
    best = params["n_estimators"] - 5  # explain the trees up to a best iteration, as scoring does
    tables = treeshap.from_lightgbm(booster, best)
    theirs = booster.predict(X[:1500], pred_contrib=True, num_iteration=best)[:, :-1]
    np.testing.assert_allclose(tables.contributions(X[:1500]), theirs, rtol=1e-9, atol=1e-12)


def test_xgboost_tables_equal_pred_contribs(data):
    import xgboost as xgb

    X, y = data
    booster = xgb.XGBClassifier(n_estimators=40, max_depth=8, tree_method="hist").fit(X, y).get_booster()
    tables = treeshap.from_xgboost(booster, 30)
    theirs = booster.predict(xgb.DMatrix(X[:1500]), pred_contribs=True, iteration_range=(0, 30))[:, :-1]
    # XGBoost sums its contributions in float32
    np.testing.assert_allclose(tables.contributions(X[:1500]), theirs, rtol=1e-4, atol=1e-5)


def test_leaves_beyond_the_table_limit_are_computed_per_row(data, monkeypatch):
    import lightgbm as lgb

    X, y = data
    booster = lgb.LGBMClassifier(verbose=-1, num_leaves=63, n_estimators=20, min_child_samples=5).fit(X, y).booster_
    monkeypatch.setattr(treeshap, "TABLE_MAX_FEATURES", 2)
    tables = treeshap.from_lightgbm(booster)
    assert (tables.table_start < 0).sum() > 0.5 * len(tables.table_start)  # most leaves have no table
    theirs = booster.predict(X[:800], pred_contrib=True)[:, :-1]
    np.testing.assert_allclose(tables.contributions(X[:800]), theirs, rtol=1e-9, atol=1e-12)


def test_categorical_splits_are_left_to_the_booster(data):
    import lightgbm as lgb
    import pandas as pd

    X, _ = data
    frame = pd.DataFrame(np.nan_to_num(X[:, :6]), columns=[f"c{i}" for i in range(6)])
    frame["c4"] = frame["c4"].astype(int).astype("category")
    y = frame["c4"].isin([1, 3]).to_numpy().astype(int)  # only a category set separates the classes
    booster = lgb.LGBMClassifier(verbose=-1, n_estimators=10, min_child_samples=5).fit(frame, y).booster_
    with pytest.raises(treeshap.UnsupportedTrees, match="categorical"):
        treeshap.from_lightgbm(booster)


def test_a_batch_model_keeps_its_tables_out_of_its_pickle(tiny_training_set):
    from batchml.models import fit_candidate
    from batchml.specs import CandidateSpec

    model = fit_candidate(CandidateSpec(name="lgbm", kind="lightgbm"), {"n_estimators": 30}, tiny_training_set, 0, 5)
    X = model.transform(tiny_training_set.frames["test"].head(300))
    ours = model.contributions(X)
    assert model.shap_tables() is not None
    best = model.info["best_iteration"]
    theirs = model.estimator.booster_.predict(X, pred_contrib=True, num_iteration=best)[:, :-1]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    copy = pickle.loads(pickle.dumps(model))
    assert "_shap_tables" not in copy.__dict__
    np.testing.assert_allclose(copy.contributions(X), ours)


def test_one_split_gives_the_leaf_value_less_the_covered_mean():
    treeshap.warm_up()  # what the demo runs in the background: the kernels compile (or load) on a stump
    nodes = [{"feature": 0, "threshold": 0.0, "default_left": False, "missing": treeshap.MISSING_DEFAULT,
              "strict": False, "cover": 4.0, "left": 1, "right": 2},
             {"value": -1.0, "cover": 3.0}, {"value": 2.0, "cover": 1.0}]
    tables = treeshap._tables(nodes, [0], 1, np.float64)
    mean = (3 * -1.0 + 1 * 2.0) / 4
    got = tables.contributions(np.array([[-5.0], [5.0], [np.nan]]))[:, 0]
    np.testing.assert_allclose(got, [-1.0 - mean, 2.0 - mean, 2.0 - mean])  # missing goes right (the default)
