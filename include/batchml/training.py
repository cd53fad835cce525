"""Training sets and models: snapshots x matured labels split by time, candidates tuned with Optuna.

Point in time, twice over:
  * features of snapshot s come from the published partition `features/<use case>/dt=s/` (data before s only);
  * its label is "an event of the label source in [s, s + horizon)", read only from label events that happened
    before the training date T, and only snapshots with s + horizon <= T are used, so no label comes from the future.
The split is strictly by time: the oldest snapshots train, the next validate (early stopping, tuning), the newest
test; with `purge`, snapshots whose label window would reach the next block are skipped.

Models carry their preprocessing: a `BatchModel` holds a fitted sklearn pipeline (encoding + estimator) and an
optional calibrator, and takes the feature table's own columns; scoring cannot skew from training.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError
from batchml.features import AS_OF_COLUMN, feature_columns
from batchml.specs import LOWER_IS_BETTER, CandidateSpec, ColumnLabelSpec, RandomSplitSpec, UseCaseSpec
from batchml.storage import DATA_FILE, feature_partition_dir

log = logging.getLogger(__name__)

LABEL = "label"
SPLITS = ("train", "valid", "test")


class TrainingDataError(BatchMLError):
    """The training data cannot give an honest model (too few rows, one class, NaN, missing columns, ...)."""


# Snapshots and labels --------------------------------------------------------------------------------------------


def snapshot_plan(spec: UseCaseSpec, training_date: dt.date) -> dict[str, list[dt.date]]:
    """Snapshot dates of each split, oldest first. The newest test snapshot is `training_date - horizon`.

    A random split has one snapshot, the training date's, shared by every split (its rows are split instead).
    """
    split = spec.training.split
    if isinstance(split, RandomSplitSpec):
        return {name: [training_date] for name in SPLITS}
    horizon = spec.horizon_days
    step = split.every_days
    gap = math.ceil(horizon / step) - 1 if split.purge else 0  # snapshots skipped between blocks
    newest = training_date - dt.timedelta(days=horizon)
    plan: dict[str, list[dt.date]] = {}
    k = 0
    for name, count in (("test", split.test), ("valid", split.validation), ("train", split.train)):
        plan[name] = sorted(newest - dt.timedelta(days=step * (k + i)) for i in range(count))
        k += count + gap
    return {name: plan[name] for name in SPLITS}


def label_snapshots(
    spec: UseCaseSpec, raw_root: Path, snapshots: list[dt.date], training_date: dt.date
) -> pd.DataFrame:
    """(entity, as_of_date) pairs with a label event in [as_of, as_of + horizon), from events before the training
    date only. Entities absent from the result have label 0."""
    import pyarrow.dataset as ds

    from batchml.features import as_of_timestamp
    from batchml.storage import Landing

    horizon = dt.timedelta(days=spec.horizon_days)
    late = [s for s in snapshots if s + horizon > training_date]
    if late:
        raise TrainingDataError(
            f"labels of snapshots {late} have not matured by the training date {training_date} "
            f"(horizon {spec.label.horizon_days} days)"
        )
    source = spec.label.source
    ts_col = spec.sources[source].timestamp
    key = spec.entity.key
    end = as_of_timestamp(training_date)
    days = [d for d in Landing(str(raw_root)).landed_days(source, before=training_date) if d >= min(snapshots)]
    files = [str(p) for d in days for p in (raw_root / source / f"dt={d.isoformat()}").glob("*.parquet")]
    if not files:
        return pd.DataFrame({key: pd.Series(dtype="str"), AS_OF_COLUMN: pd.Series(dtype="object")})
    events = ds.dataset(files, format="parquet").to_table(columns=[key, ts_col], filter=ds.field(ts_col) < end)
    events = events.to_pandas()
    hits = []
    for s in snapshots:
        start = pd.Timestamp(as_of_timestamp(s))
        in_window = events[(events[ts_col] >= start) & (events[ts_col] < start + horizon)]
        hits.append(pd.DataFrame({key: in_window[key].unique(), AS_OF_COLUMN: s}))
    return pd.concat(hits, ignore_index=True).drop_duplicates()


def column_labels(spec: UseCaseSpec, raw_root: Path, snapshot: dt.date) -> pd.DataFrame:
    """(entity, label) of a `column` label, from the snapshot partition the features of `snapshot` came from.

    Raises TrainingDataError unless the column holds exactly two values, one of them `label.positive`.
    """
    from batchml.features import snapshot_day
    from batchml.storage import read_partition

    label = spec.label
    assert isinstance(label, ColumnLabelSpec)
    key = spec.entity.key
    day = snapshot_day(raw_root, spec, snapshot)
    table = read_partition(raw_root, spec.entity.source, day, columns=[key, label.column]).to_pandas()
    where = f"{spec.path or spec.name}: label.column {label.column!r} (snapshot dt={day})"
    values = table[label.column]
    if values.isna().any():
        raise TrainingDataError(f"{where}: {int(values.isna().sum())} rows have no label; drop or fix them")
    problem = label.problem_with(values.unique())
    if problem:
        raise TrainingDataError(f"{where}: {problem}")
    return pd.DataFrame({key: table[key], LABEL: (values.astype(str) == str(label.positive)).astype("int8")})


# Training sets ---------------------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """Feature rows with labels, per split, plus what is needed to reproduce and audit them."""

    frames: dict[str, pd.DataFrame]
    features: list[str]
    categorical: list[str]
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.features if f not in self.categorical]

    def X(self, split: str) -> pd.DataFrame:
        return self.frames[split][self.features]

    def y(self, split: str) -> np.ndarray:
        return self.frames[split][LABEL].to_numpy()

    def save(self, folder: Path) -> None:
        import json

        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames.items():
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        meta = {"features": self.features, "categorical": self.categorical, "lineage": self.lineage}
        (folder / "training_set.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> TrainingSet:
        import json

        meta = json.loads((folder / "training_set.json").read_text())
        frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in SPLITS}
        return cls(frames, meta["features"], meta["categorical"], meta["lineage"])


def content_hash(frames: dict[str, pd.DataFrame]) -> str:
    """A hash of the rows and values of every split (independent of file encoding)."""
    digest = hashlib.sha256()
    for name in SPLITS:
        frame = frames[name]
        digest.update(name.encode())
        digest.update(",".join(frame.columns).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _check_frame(spec: UseCaseSpec, name: str, frame: pd.DataFrame, features: list[str], numeric: list[str]) -> None:
    rows, pos = len(frame), int(frame[LABEL].sum())
    if rows < spec.training.min_rows:
        raise TrainingDataError(
            f"{name} split has {rows} rows, fewer than training.min_rows={spec.training.min_rows}: "
            "widen the snapshot window (training.split) or check the feature partitions"
        )
    if pos < spec.training.min_positives or rows - pos < spec.training.min_positives:
        raise TrainingDataError(
            f"{name} split has {pos} positive and {rows - pos} negative labels; each needs at least "
            f"training.min_positives={spec.training.min_positives} (a single-class label cannot train or test a model)"
        )
    values = frame[numeric].to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {col: int(n) for col, n in zip(numeric, bad.sum(axis=0), strict=True) if n}
        raise TrainingDataError(f"{name} split has NaN or infinite feature values: {counts}")
    nulls = frame[features].isna().sum()
    if nulls.any():
        raise TrainingDataError(f"{name} split has missing values: {nulls[nulls > 0].to_dict()}")


def random_split(frame: pd.DataFrame, split: RandomSplitSpec) -> dict[str, pd.DataFrame]:
    """Stratified (by label) random split into train/valid/test with a fixed seed; same input, same rows."""
    from sklearn.model_selection import train_test_split

    # the feature partition is sorted by key, so the split does not depend on file order
    rest, test = train_test_split(frame, test_size=split.test, stratify=frame[LABEL], random_state=split.seed)
    train, valid = train_test_split(rest, test_size=split.validation / (1 - split.test), stratify=rest[LABEL],
                                    random_state=split.seed + 1)
    return {"train": train.reset_index(drop=True), "valid": valid.reset_index(drop=True),
            "test": test.reset_index(drop=True)}


def build_training_set(
    spec: UseCaseSpec, features_root: Path, raw_root: Path, training_date: dt.date
) -> TrainingSet:
    """Join the published feature partitions of every planned snapshot with matured labels; check and split."""
    plan = snapshot_plan(spec, training_date)
    columns = feature_columns(spec)
    features = list(columns)
    categorical = [c for c, kind in columns.items() if kind == "categorical"]
    numeric = [c for c in features if c not in categorical]
    key = spec.entity.key
    all_snapshots = sorted({s for name in SPLITS for s in plan[name]})
    missing = [s for s in all_snapshots if not (feature_partition_dir(features_root, spec.name, s) / DATA_FILE).exists()]
    if missing:
        raise TrainingDataError(
            f"feature partitions missing for snapshots {[s.isoformat() for s in missing]} under "
            f"{features_root / spec.name}: run the feature DAG for those dates (the training DAG's "
            "ensure_feature_snapshots task builds them)"
        )
    def read(s: dt.date) -> tuple[pd.DataFrame, str]:
        path = feature_partition_dir(features_root, spec.name, s) / DATA_FILE
        frame = pd.read_parquet(path)
        absent = [c for c in [key, *features] if c not in frame.columns]
        if absent:
            raise TrainingDataError(f"{path}: feature columns {absent} are missing; rebuild this partition")
        frame[AS_OF_COLUMN] = s
        return frame[[key, AS_OF_COLUMN, *features]], str(path)

    frames: dict[str, pd.DataFrame] = {}
    partitions: dict[str, list[str]] = {}
    split = spec.training.split
    if isinstance(split, RandomSplitSpec):
        frame, path = read(training_date)
        joined = frame.merge(column_labels(spec, raw_root, training_date), on=key, how="left")
        if joined[LABEL].isna().any():
            raise TrainingDataError(f"{path}: {int(joined[LABEL].isna().sum())} entities have no label row")
        joined[LABEL] = joined[LABEL].astype("int8")
        for name, part in random_split(joined, split).items():
            _check_frame(spec, name, part, features, numeric)
            frames[name], partitions[name] = part, [path]
    else:
        labels = label_snapshots(spec, raw_root, all_snapshots, training_date)
        labels[LABEL] = 1
        for name in SPLITS:
            parts = []
            for s in plan[name]:
                frame, path = read(s)
                parts.append(frame)
                partitions.setdefault(name, []).append(path)
            joined = pd.concat(parts, ignore_index=True).merge(labels, on=[key, AS_OF_COLUMN], how="left")
            joined[LABEL] = joined[LABEL].fillna(0).astype("int8")
            _check_frame(spec, name, joined, features, numeric)
            frames[name] = joined
    lineage = {
        "training_date": training_date.isoformat(),
        "split": split.kind,
        "snapshots": {name: [s.isoformat() for s in plan[name]] for name in SPLITS},
        "partitions": partitions,
        "rows": {name: len(f) for name, f in frames.items()},
        "label_rate": {name: round(float(f[LABEL].mean()), 5) for name, f in frames.items()},
        "data_hash": content_hash(frames),
        "horizon_days": spec.horizon_days,
    }
    log.info("Training set for %s: %s rows, label rates %s", spec.name, lineage["rows"], lineage["label_rate"])
    return TrainingSet(frames, features, categorical, lineage)


# Models ----------------------------------------------------------------------------------------------------------


def metric_value(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    from sklearn import metrics as m

    if metric == "roc_auc":
        return float(m.roc_auc_score(y, p))
    if metric == "pr_auc":
        return float(m.average_precision_score(y, p))
    if metric == "log_loss":
        return float(m.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    if metric == "brier":
        return float(m.brier_score_loss(y, p))
    if metric == "top_decile_capture":
        k = max(1, int(round(len(p) * 0.1)))
        top = np.argsort(-p, kind="stable")[:k]
        return float(y[top].sum() / max(y.sum(), 1))
    raise ValueError(f"unknown metric {metric!r}")


def better(metric: str, a: float, b: float) -> bool:
    """Whether value a beats value b for this metric."""
    return a < b if metric in LOWER_IS_BETTER else a > b


class BatchModel:
    """A fitted model that takes feature-table columns and returns probabilities (preprocessing included)."""

    def __init__(self, kind: str, pipeline, features: list[str], categorical: list[str], calibrator=None,
                 info: dict | None = None):
        self.kind = kind
        self.pipeline = pipeline
        self.features = list(features)
        self.categorical = list(categorical)
        self.calibrator = calibrator
        self.info = info or {}

    def _frame(self, df: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise BatchMLError(f"input lacks the model's feature columns {missing}")
        return df[self.features]

    def raw_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(self._frame(df))[:, 1]

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        p = self.raw_proba(df)
        return self.calibrator.predict(p) if self.calibrator is not None else p

    @property
    def estimator(self):
        return self.pipeline[-1]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model's own input matrix (after encoding), with the model's column names."""
        return self.pipeline[:-1].transform(self._frame(df))


def _preprocessor(kind: str, categorical: list[str], numeric: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if kind == "logistic_regression":
        cat = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        num = StandardScaler()
    else:  # trees: one model column per feature, so SHAP values map 1:1 to features
        cat = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
        num = "passthrough"
    return ColumnTransformer([("cat", cat, categorical), ("num", num, numeric)], verbose_feature_names_out=False)


def _estimator(cand: CandidateSpec, params: dict, seed: int, early_stopping: int | None):
    base = {**cand.params, **params}
    if cand.kind == "xgboost":
        from xgboost import XGBClassifier

        defaults = {"n_estimators": 2000, "learning_rate": 0.05, "max_depth": 5, "subsample": 0.8,
                    "colsample_bytree": 0.8, "min_child_weight": 5, "tree_method": "hist"}
        return XGBClassifier(**{**defaults, **base}, eval_metric="logloss", early_stopping_rounds=early_stopping,
                             random_state=seed, n_jobs=2, verbosity=0)
    if cand.kind == "lightgbm":
        from lightgbm import LGBMClassifier

        defaults = {"n_estimators": 2000, "learning_rate": 0.05, "num_leaves": 31, "subsample": 0.8,
                    "subsample_freq": 1, "colsample_bytree": 0.8, "min_child_samples": 40}
        return LGBMClassifier(**{**defaults, **base}, random_state=seed, n_jobs=2, verbose=-1)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(**{"C": 1.0, "max_iter": 3000, **base})


def fit_candidate(cand: CandidateSpec, params: dict, ts: TrainingSet, seed: int, early_stopping: int) -> BatchModel:
    """Fit one configuration on train, with early stopping on validation for boosted trees."""
    from sklearn.pipeline import Pipeline

    prep = _preprocessor(cand.kind, ts.categorical, ts.numeric).set_output(transform="pandas")
    X_train = prep.fit_transform(ts.X("train"))
    X_valid = prep.transform(ts.X("valid"))
    est = _estimator(cand, params, seed, early_stopping)
    y_train, y_valid = ts.y("train"), ts.y("valid")
    info: dict[str, Any] = {"candidate": cand.name, "kind": cand.kind, "params": {**cand.params, **params}}
    if cand.kind == "xgboost":
        est.fit(X_train, y_train, eval_set=[(X_valid, y_valid)], verbose=False)
        info["best_iteration"] = int(est.best_iteration)
    elif cand.kind == "lightgbm":
        from lightgbm import early_stopping as lgb_early_stopping

        est.fit(X_train, y_train, eval_X=X_valid, eval_y=y_valid,
                callbacks=[lgb_early_stopping(early_stopping, verbose=False)])
        info["best_iteration"] = int(est.best_iteration_ or est.n_estimators)
    else:
        est.fit(X_train, y_train)
        # the baseline's exact linear SHAP values are coef x (x - mean of the training inputs)
        info["input_mean"] = np.asarray(X_train, dtype="float64").mean(axis=0).tolist()
    return BatchModel(cand.kind, Pipeline([("prep", prep), ("model", est)]), ts.features, ts.categorical, info=info)


def cross_validate(cand: CandidateSpec, info: dict, ts: TrainingSet, folds: int, seed: int) -> dict:
    """Stratified k-fold metrics of one fitted configuration over every row of the training set (all splits).

    Leakage-free: each fold's encoding and model are fitted on the other folds only, and boosted trees use the
    number of rounds early stopping chose on the validation split, so no fold's own rows pick its stopping point.
    """
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline

    frame = pd.concat([ts.frames[name] for name in SPLITS], ignore_index=True)
    X, y = frame[ts.features], frame[LABEL].to_numpy()
    params = dict(info.get("params", {}))
    if cand.kind in ("xgboost", "lightgbm") and info.get("best_iteration") is not None:
        # xgboost's best_iteration counts from 0, lightgbm's from 1
        params["n_estimators"] = int(info["best_iteration"]) + (1 if cand.kind == "xgboost" else 0)
    per_fold = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(X, y):
        prep = _preprocessor(cand.kind, ts.categorical, ts.numeric).set_output(transform="pandas")
        est = _estimator(cand, params, seed, None)
        model = Pipeline([("prep", prep), ("model", est)]).fit(X.iloc[train_idx], y[train_idx])
        p = model.predict_proba(X.iloc[test_idx])[:, 1]
        per_fold.append({m: metric_value(m, y[test_idx], p) for m in ("roc_auc", "pr_auc", "brier")})
    out = {"folds": folds, "rows": len(frame), "per_fold": per_fold}
    for m in ("roc_auc", "pr_auc", "brier"):
        values = np.array([f[m] for f in per_fold])
        out[m] = float(values.mean())
        out[f"{m}_std"] = float(values.std(ddof=1))
    log.info("%s: %d-fold cross-validated ROC AUC %.4f +- %.4f", cand.name, folds, out["roc_auc"], out["roc_auc_std"])
    return out


def _suggest(trial, name: str, space) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


DEFAULT_SEARCH = {
    "xgboost": {
        "max_depth": {"low": 3, "high": 8, "integer": True},
        "learning_rate": {"low": 0.02, "high": 0.2, "log": True},
        "min_child_weight": {"low": 1, "high": 50, "log": True},
        "subsample": {"low": 0.6, "high": 1.0},
        "colsample_bytree": {"low": 0.5, "high": 1.0},
        "reg_lambda": {"low": 0.1, "high": 20, "log": True},
    },
    "lightgbm": {
        "num_leaves": {"low": 8, "high": 64, "integer": True, "log": True},
        "learning_rate": {"low": 0.02, "high": 0.2, "log": True},
        "min_child_samples": {"low": 10, "high": 200, "log": True, "integer": True},
        "subsample": {"low": 0.6, "high": 1.0},
        "colsample_bytree": {"low": 0.5, "high": 1.0},
        "reg_lambda": {"low": 0.01, "high": 20, "log": True},
    },
    "logistic_regression": {"C": {"low": 0.001, "high": 10, "log": True}},
}


@dataclass
class TunedCandidate:
    name: str
    kind: str
    model: BatchModel
    valid_score: float
    trials: list[dict]
    seconds: float


def tune_candidate(
    cand: CandidateSpec, ts: TrainingSet, spec: UseCaseSpec, trials: int | None = None, timeout: int | None = None
) -> TunedCandidate:
    """Optuna search within the budget (trials and seconds); returns the best configuration refitted."""
    import optuna

    from batchml.specs import SearchSpace

    tuning = spec.training.tuning
    n_trials = trials or tuning.trials
    timeout = timeout if timeout is not None else tuning.timeout_seconds
    search = cand.search or {k: SearchSpace(**v) for k, v in DEFAULT_SEARCH[cand.kind].items()}
    metric = tuning.metric
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=tuning.seed))
    y_valid = ts.y("valid")

    def objective(trial) -> float:
        params = {name: _suggest(trial, name, space) for name, space in search.items()}
        model = fit_candidate(cand, params, ts, tuning.seed, tuning.early_stopping_rounds)
        trial.set_user_attr("best_iteration", model.info.get("best_iteration"))
        return metric_value(metric, y_valid, model.raw_proba(ts.X("valid")))

    started = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=False)
    seconds = time.perf_counter() - started
    best = study.best_trial
    model = fit_candidate(cand, best.params, ts, tuning.seed, tuning.early_stopping_rounds)
    model.info.update({"trials": len(study.trials), "tuning_seconds": round(seconds, 1), "valid_" + metric: best.value})
    history = [{"number": t.number, "value": t.value, "params": t.params, "seconds": round(t.duration.total_seconds(), 2)
                if t.duration else None} for t in study.trials]
    log.info("%s: %d trials in %.0f s, best validation %s %.4f (%s)", cand.name, len(study.trials), seconds, metric,
             best.value, best.params)
    return TunedCandidate(cand.name, cand.kind, model, float(best.value), history, seconds)


def calibrate(model: BatchModel, ts: TrainingSet, mode: str) -> BatchModel:
    """Attach an isotonic or sigmoid calibrator fitted on validation predictions, if asked (or if it helps)."""
    import copy

    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if mode == "none":
        return model
    model = copy.copy(model)  # the input model stays as it was
    model.info = dict(model.info)
    p, y = model.raw_proba(ts.X("valid")), ts.y("valid")

    def fit(kind: str, p_fit, y_fit):
        if kind == "isotonic":
            return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p_fit, y_fit)
        lr = LogisticRegression().fit(np.log(np.clip(p_fit, 1e-6, 1 - 1e-6) / (1 - np.clip(p_fit, 1e-6, 1 - 1e-6))).reshape(-1, 1), y_fit)
        return _Sigmoid(lr)

    kind = "isotonic" if mode == "auto" else mode
    if mode == "auto":
        # cross-fit on two halves of validation: keep calibration only if it lowers the Brier score out of sample
        rng = np.random.default_rng(0)
        half = rng.random(len(y)) < 0.5
        calibrated = np.empty_like(p)
        for a in (half, ~half):
            calibrated[~a] = fit(kind, p[a], y[a]).predict(p[~a])
        before, after = metric_value("brier", y, p), metric_value("brier", y, calibrated)
        model.info["calibration_check"] = {"brier_raw": before, "brier_calibrated": after}
        if not after < before * 0.995:
            model.info["calibration"] = "none (did not help)"
            return model
    model.calibrator = fit(kind, p, y)
    model.info["calibration"] = kind
    return model


class _Sigmoid:
    """Platt scaling on the log-odds of the raw probability."""

    def __init__(self, lr):
        self.lr = lr

    def predict(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return self.lr.predict_proba(np.log(p / (1 - p)).reshape(-1, 1))[:, 1]
