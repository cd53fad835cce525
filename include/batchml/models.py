"""The model object every stage shares: a fitted scikit-learn pipeline (encoding + estimator), an optional
probability calibration, and what the model says about each row (probabilities, SHAP contributions).

A `BatchModel` takes the feature table's own columns, so scoring cannot skew from training. Fitting a candidate's
configuration is here too; choosing among configurations (tuning) is in `training`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError

if TYPE_CHECKING:
    from batchml.datasets import TrainingSet
    from batchml.specs import CandidateSpec


class BatchModel:
    """A fitted model that takes feature-table columns and returns probabilities (preprocessing included)."""

    def __init__(self, kind: str, pipeline, features: list[str], categorical: list[str], info: dict | None = None):
        self.kind = kind
        self.pipeline = pipeline
        self.features = list(features)
        self.categorical = list(categorical)
        self.calibrated = None  # a CalibratedClassifierCV over the frozen pipeline, when calibration helps
        self.info = info or {}

    def _frame(self, df: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise BatchMLError(f"input lacks the model's feature columns {missing}")
        return df[self.features]

    def raw_proba(self, df: pd.DataFrame) -> np.ndarray:
        """The estimator's probability, before calibration."""
        return self.pipeline.predict_proba(self._frame(df))[:, 1]

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """The probability of the positive class (calibrated, if the model is)."""
        model = self.calibrated if self.calibrated is not None else self.pipeline
        return model.predict_proba(self._frame(df))[:, 1]

    @property
    def estimator(self):
        return self.pipeline[-1]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model's own input matrix (after encoding), with the model's column names."""
        return self.pipeline[:-1].transform(self._frame(df))

    # What the model says about each row ------------------------------------------------------------------------------
    def contributions(self, X: pd.DataFrame, approximate: bool = False) -> np.ndarray:
        """SHAP contributions per model input column (log-odds, bias term dropped), rows x columns: exact TreeSHAP
        from the trees' per-leaf tables (`batchml.treeshap`: the boosters' own values, several times faster), or
        by the boosters themselves (`pred_contribs` / `pred_contrib`; Saabas with `approximate`); a linear
        model's are exact and cheap: coef x (x - mean of the training inputs)."""
        est = self.estimator
        best = self.info.get("best_iteration")
        tables = None if approximate else self.shap_tables()
        if tables is not None:
            return tables.contributions(X)
        if self.kind == "xgboost":
            import xgboost as xgb

            rng = (0, best + 1) if best is not None else (0, 0)
            out = est.get_booster().predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=approximate,
                                            iteration_range=rng)
            return out[:, :-1]
        if self.kind == "lightgbm":
            return np.asarray(est.booster_.predict(X, pred_contrib=True, num_iteration=best))[:, :-1]
        mean = self.info.get("input_mean")
        mean = np.asarray(mean) if mean is not None else np.zeros(X.shape[1])
        return (np.asarray(X, dtype="float64") - mean) * est.coef_[0]

    def shap_tables(self):
        """The trees' TreeSHAP tables (`batchml.treeshap`), built on first use and kept for the model's lifetime;
        None for a linear model or trees the tables do not cover."""
        if self.kind not in ("xgboost", "lightgbm"):
            return None
        if getattr(self, "_shap_tables", None) is None:
            from batchml import treeshap

            best = self.info.get("best_iteration")
            try:
                self._shap_tables = (treeshap.from_xgboost(self.estimator.get_booster(),
                                                           None if best is None else best + 1)
                                     if self.kind == "xgboost"
                                     else treeshap.from_lightgbm(self.estimator.booster_, best))
            except treeshap.UnsupportedTrees:
                self._shap_tables = False
        return self._shap_tables or None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_shap_tables", None)  # derived from the trees: rebuilt on first use, not saved
        return state

    def feature_of_column(self) -> list[str]:
        """The feature each model input column comes from (one-hot columns map back to their categorical feature)."""
        names = list(self.pipeline[:-1].get_feature_names_out())
        if self.kind != "logistic_regression":
            return names
        encoder = self.pipeline[0].named_transformers_["cat"]
        owners = {f"{col}_{val}": col for col, cats in zip(self.categorical, encoder.categories_, strict=True)
                  for val in cats}
        return [owners.get(n, n) for n in names]

    def per_feature(self, contrib: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Sum model-column contributions per original feature (a no-op for trees: one column per feature)."""
        owners = self.feature_of_column()
        features = list(dict.fromkeys(owners))
        if len(features) == len(owners):
            return features, contrib
        index = {f: i for i, f in enumerate(features)}
        out = np.zeros((contrib.shape[0], len(features)))
        for j, owner in enumerate(owners):
            out[:, index[owner]] += contrib[:, j]
        return features, out


# Fitting -----------------------------------------------------------------------------------------------------------


def preprocessor(kind: str, categorical: list[str], numeric: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if kind == "logistic_regression":
        cat = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        num = StandardScaler()
    else:  # trees: one model column per feature, so SHAP values map 1:1 to features
        cat = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
        num = "passthrough"
    return ColumnTransformer([("cat", cat, categorical), ("num", num, numeric)], verbose_feature_names_out=False)


SMALL_FIT_ROWS = 20_000
"""Below this many training rows a booster uses one thread: a second one saves little on small data, and OpenMP's
spin-waiting makes it many times slower when the cores are shared (a busy Airflow worker)."""


def estimator(cand: CandidateSpec, params: dict, seed: int, early_stopping: int | None, rows: int | None = None):
    """The scikit-learn estimator of a candidate with `params` over its own fixed ones and the defaults; `rows`
    (training rows) picks the number of threads."""
    base = {**cand.params, **params}
    threads = 1 if rows is not None and rows < SMALL_FIT_ROWS else 2
    if cand.kind == "xgboost":
        from xgboost import XGBClassifier

        defaults = {"n_estimators": 2000, "learning_rate": 0.05, "max_depth": 5, "subsample": 0.8,
                    "colsample_bytree": 0.8, "min_child_weight": 5, "tree_method": "hist"}
        return XGBClassifier(**{**defaults, **base}, eval_metric="logloss", early_stopping_rounds=early_stopping,
                             random_state=seed, n_jobs=threads, verbosity=0)
    if cand.kind == "lightgbm":
        from lightgbm import LGBMClassifier

        defaults = {"n_estimators": 2000, "learning_rate": 0.05, "num_leaves": 31, "subsample": 0.8,
                    "subsample_freq": 1, "colsample_bytree": 0.8, "min_child_samples": 40}
        return LGBMClassifier(**{**defaults, **base}, random_state=seed, n_jobs=threads, verbose=-1)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(**{"C": 1.0, "max_iter": 3000, **base})


def fit_pipeline(cand: CandidateSpec, params: dict, X: pd.DataFrame, y: np.ndarray, categorical: list[str],
                 numeric: list[str], seed: int):
    """Encoding + estimator fitted on (X, y) with fixed settings (no early stopping): one fold of cross-validation,
    or an untuned reference."""
    from sklearn.pipeline import Pipeline

    prep = preprocessor(cand.kind, categorical, numeric).set_output(transform="pandas")
    return Pipeline([("prep", prep), ("model", estimator(cand, params, seed, None, len(X)))]).fit(X, y)


def fit_candidate(cand: CandidateSpec, params: dict, ts: TrainingSet, seed: int,
                  early_stopping: int | None) -> BatchModel:
    """Fit one configuration on train; boosted trees stop early on validation unless `early_stopping` is None
    (then `n_estimators` trees are grown, as the settings say)."""
    from sklearn.pipeline import Pipeline

    prep = preprocessor(cand.kind, ts.categorical, ts.numeric).set_output(transform="pandas")
    X_train = prep.fit_transform(ts.X("train"))
    # the validation rows are encoded only when a booster stops early on them (two million rows at 1M customers)
    stops = early_stopping is not None and cand.kind in ("xgboost", "lightgbm")
    X_valid = prep.transform(ts.X("valid")) if stops else None
    est = estimator(cand, params, seed, early_stopping, len(X_train))
    y_train, y_valid = ts.y("train"), ts.y("valid")
    # down-sampled negatives weigh 1 / share (datasets.downsample_negatives): the fit sees the real class balance
    w = ts.weights("train")
    info: dict[str, Any] = {"candidate": cand.name, "kind": cand.kind, "params": {**cand.params, **params},
                            "early_stopping": early_stopping, "weighted": w is not None}
    if cand.kind == "xgboost":
        if early_stopping is None:
            est.fit(X_train, y_train, sample_weight=w, verbose=False)
            info["best_iteration"] = int(est.get_booster().num_boosted_rounds()) - 1  # 0-based, all trees
        else:
            est.fit(X_train, y_train, sample_weight=w, eval_set=[(X_valid, y_valid)], verbose=False)
            info["best_iteration"] = int(est.best_iteration)
    elif cand.kind == "lightgbm":
        if early_stopping is None:
            est.fit(X_train, y_train, sample_weight=w)
            info["best_iteration"] = int(est.n_estimators)  # 1-based, all trees
        else:
            from lightgbm import early_stopping as lgb_early_stopping

            est.fit(X_train, y_train, sample_weight=w, eval_X=X_valid, eval_y=y_valid,
                    callbacks=[lgb_early_stopping(early_stopping, verbose=False)])
            info["best_iteration"] = int(est.best_iteration_ or est.n_estimators)
    else:
        est.fit(X_train, y_train, sample_weight=w)
        # the baseline's exact linear SHAP values are coef x (x - mean of the training inputs, as weighted)
        info["input_mean"] = np.average(np.asarray(X_train, dtype="float64"), axis=0, weights=w).tolist()
    if cand.kind in ("xgboost", "lightgbm"):
        est.set_params(n_jobs=2)  # scoring may see many more rows than training did
    return BatchModel(cand.kind, Pipeline([("prep", prep), ("model", est)]), ts.features, ts.categorical, info=info)


# Calibration -------------------------------------------------------------------------------------------------------


def calibrate(model: BatchModel, ts: TrainingSet, mode: str) -> BatchModel:
    """Calibrate the model's probabilities on the validation split with scikit-learn (`CalibratedClassifierCV`
    over the frozen, already fitted model): `isotonic`, `sigmoid` (Platt), `none`, or `auto`, which keeps an
    isotonic calibration only if it lowers the Brier score out of sample (two-fold cross-fitting on validation).
    Returns a copy; the input model is unchanged."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator
    from sklearn.isotonic import IsotonicRegression
    from sklearn.model_selection import StratifiedKFold

    from batchml.metrics import metric_value

    if mode == "none":
        return model
    model = copy.copy(model)
    model.info = dict(model.info)
    X, y = model._frame(ts.X("valid")), ts.y("valid")
    method = "isotonic" if mode == "auto" else mode

    def calibrator():
        return CalibratedClassifierCV(FrozenEstimator(model.pipeline), method=method)

    if mode == "auto":
        # the check cross-fits what CalibratedClassifierCV fits (an isotonic map of the frozen model's decision
        # values, or of its probabilities when it has none) on one prediction of the validation rows, instead of
        # predicting them again in every fold (a million rows of a 500-tree model: about 20 s per prediction)
        raw = model.raw_proba(X)
        pipe = model.pipeline
        decision = pipe.decision_function(X) if hasattr(pipe, "decision_function") else raw
        out_of_sample = np.empty(len(y))
        for fit_rows, held_out in StratifiedKFold(n_splits=2, shuffle=True, random_state=0).split(decision, y):
            iso = IsotonicRegression(out_of_bounds="clip").fit(decision[fit_rows], y[fit_rows])
            out_of_sample[held_out] = iso.predict(decision[held_out])
        before, after = metric_value("brier", y, raw), metric_value("brier", y, out_of_sample)
        model.info["calibration_check"] = {"brier_raw": before, "brier_calibrated": after}
        if not after < before * 0.995:
            model.info["calibration"] = "none (did not help)"
            return model
    model.calibrated = calibrator().fit(X, y)
    model.info["calibration"] = method
    return model
