"""Candidates and tuning: each candidate's hyper-parameters searched with Optuna within the spec's budget, starting
from known-good settings, the best candidate selected and calibrated; cross-validation on shared folds, and the
untuned references every tuned model must beat.

Where a study tunes:
  * a random split of a small table (train + validation rows below `tuning.cv_below_rows`): on stratified k-fold
    cross-validation of the train + validation rows; the number of trees is a tuned setting (no early stopping,
    which would pick its stopping point on the very rows it is scored on). The test split stays untouched.
  * otherwise (a time split always: it is never shuffled into folds): on the validation split, boosted trees
    stopping early on it.
Every study's first trials are known-good settings (`PRESETS`; the first one of each kind is the untuned reference
the model card compares with), so tuning can only pick something that scored at least as well on the rows it tunes
on. Fitting one configuration and the model object are in `models`; the metrics in `metrics`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.datasets import LABEL, TrainingSet, tuning_sample
from batchml.metrics import HEADLINE, better, headline, metric_value
from batchml.models import BatchModel, calibrate, fit_candidate, fit_pipeline
from batchml.results import SelectedModel, TrainingSetRef
from batchml.specs import LOWER_IS_BETTER, CandidateSpec, RandomSplitSpec, UseCaseSpec

log = logging.getLogger(__name__)

# Known-good settings, enqueued as each study's first trials (as many as the trial budget allows). The first of each
# kind is the untuned reference: LightGBM with 300 trees, learning rate 0.05 and 15 leaves, library defaults otherwise.
PRESETS: dict[str, list[dict[str, Any]]] = {
    "xgboost": [
        {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 4, "min_child_weight": 1, "subsample": 1.0,
         "colsample_bytree": 1.0, "reg_lambda": 1.0},
        {"n_estimators": 500, "learning_rate": 0.03, "max_depth": 5, "min_child_weight": 5, "subsample": 0.8,
         "colsample_bytree": 0.8, "reg_lambda": 1.0},
    ],
    "lightgbm": [
        {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 20, "subsample": 1.0,
         "colsample_bytree": 1.0, "reg_lambda": 0.0},
        {"n_estimators": 500, "learning_rate": 0.03, "num_leaves": 31, "min_child_samples": 40, "subsample": 0.8,
         "colsample_bytree": 0.8, "reg_lambda": 1.0},
    ],
    "logistic_regression": [{"C": 1.0}, {"C": 0.1}],
}
REFERENCE_KINDS = ("xgboost", "lightgbm", "logistic_regression")
DEFAULT_CV_FOLDS = 5

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
# tuning on folds has no early stopping: the number of trees is searched too
CV_ROUNDS = {"low": 100, "high": 1000, "integer": True, "log": True}


# Folds and cross-validation ----------------------------------------------------------------------------------------


@dataclass
class Folds:
    """Stratified k folds of the train + validation rows (the test split is never in them)."""

    frame: pd.DataFrame
    splits: list[tuple[np.ndarray, np.ndarray]]
    seed: int

    @property
    def k(self) -> int:
        return len(self.splits)


def dev_folds(ts: TrainingSet, k: int, seed: int) -> Folds:
    from sklearn.model_selection import StratifiedKFold

    frame = pd.concat([ts.frames["train"], ts.frames["valid"]], ignore_index=True)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return Folds(frame, list(splitter.split(frame, frame[LABEL].to_numpy())), seed)


def tuning_folds(spec: UseCaseSpec, ts: TrainingSet) -> Folds | None:
    """The folds a study tunes on, or None (the validation split): k-fold only for a random split whose train +
    validation rows are fewer than `tuning.cv_below_rows`."""
    limit = spec.training.tuning.cv_below_rows
    if not isinstance(spec.training.split, RandomSplitSpec) or limit is None:
        return None
    if len(ts.frames["train"]) + len(ts.frames["valid"]) >= limit:
        return None
    return dev_folds(ts, spec.training.cv_folds if spec.training.cv_folds >= 2 else DEFAULT_CV_FOLDS,
                     spec.training.tuning.seed)


def report_folds(spec: UseCaseSpec, ts: TrainingSet) -> Folds | None:
    """The folds the model card reports on: the tuning folds, else `cv_folds` folds of a random split, else None."""
    folds = tuning_folds(spec, ts)
    if folds is None and spec.training.cv_folds >= 2 and isinstance(spec.training.split, RandomSplitSpec):
        folds = dev_folds(ts, spec.training.cv_folds, spec.training.tuning.seed)
    return folds


def cross_validate(cand: CandidateSpec, params: dict, ts: TrainingSet, folds: Folds, seed: int,
                   after_fold=None) -> dict:
    """Metrics of one configuration (fixed settings, encoding fitted inside each fold) on every fold: per fold,
    mean and standard deviation. `after_fold(i, per_fold)` runs after each fold (tuning prunes with it)."""
    X, y = folds.frame[ts.features], folds.frame[LABEL].to_numpy()
    per_fold = []
    for i, (train_idx, test_idx) in enumerate(folds.splits):
        model = fit_pipeline(cand, params, X.iloc[train_idx], y[train_idx], ts.categorical, ts.numeric, seed)
        p = model.predict_proba(X.iloc[test_idx])[:, 1]
        per_fold.append({m: metric_value(m, y[test_idx], p) for m in HEADLINE})
        if after_fold is not None:
            after_fold(i, per_fold)
    out: dict[str, Any] = {"folds": folds.k, "rows": len(folds.frame), "per_fold": per_fold}
    for m in HEADLINE:
        values = np.array([f[m] for f in per_fold])
        out[m] = float(values.mean())
        out[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def rounds_of(model: BatchModel) -> dict:
    """A fitted model's settings with the number of trees it uses (early stopping's choice) made explicit."""
    params = dict(model.info.get("params", {}))
    best = model.info.get("best_iteration")
    if model.kind in ("xgboost", "lightgbm") and best is not None:
        # xgboost's best_iteration counts from 0, lightgbm's from 1
        params["n_estimators"] = int(best) + (1 if model.kind == "xgboost" else 0)
    return params


def untuned_references(spec: UseCaseSpec, ts: TrainingSet, folds: Folds | None,
                       sample_rows: int | None = None, fitted: dict[str, BatchModel] | None = None) -> list[dict]:
    """The untuned references (the first preset of XGBoost, LightGBM and logistic regression, no spec settings):
    fitted on train and scored on the test split, and cross-validated on `folds` when given. With `sample_rows`
    (and no folds), fitted on the tuning sample the trials used (`datasets.tuning_sample`, same seed), so that they
    compare with the tuned settings fitted on that same sample; `fitted` holds those a study's first trial already
    fitted on those rows (`TunedCandidate.reference`: on the sample, or on the whole train split), by kind."""
    seed = spec.training.tuning.seed
    sample_rows = sample_rows if folds is None else None
    train_rows = len(ts.frames["train"])
    sampled = sample_rows is not None and train_rows > sample_rows
    # a reference fitted on other rows than these (a sample when none applies, or the reverse) is fitted again
    fitted = {kind: m for kind, m in (fitted or {}).items()
              if folds is None and sampled == (m.info.get("fitted_rows") != train_rows)}
    fit_on: TrainingSet | None = None  # drawn only if a reference must be fitted here
    out = []
    for kind in REFERENCE_KINDS:
        cand = CandidateSpec(name=f"untuned_{kind}", kind=kind)
        params = dict(PRESETS[kind][0])
        model = fitted.get(kind)
        if model is None:
            if fit_on is None:
                fit_on = sampled_training_set(ts, sample_rows, seed)
            model = fit_candidate(cand, params, fit_on, seed, None)
            model.info["fitted_rows"] = len(fit_on.frames["train"])
        row = {"name": f"{kind} (untuned)", "kind": kind, "params": params, "fitted_rows": model.info["fitted_rows"],
               "test": headline(ts.y("test"), model.predict_proba(ts.frames["test"]))}
        if folds is not None:
            row["cv"] = cross_validate(cand, params, ts, folds, seed)
        log.info("Untuned %s (fitted on %d train rows): test ROC AUC %.4f%s", kind, row["fitted_rows"],
                 row["test"]["roc_auc"],
                 f", {folds.k}-fold CV {row['cv']['roc_auc']:.4f}" if folds is not None else "")
        out.append(row)
    return out


def sampled_training_set(ts: TrainingSet, sample_rows: int | None, seed: int) -> TrainingSet:
    """`ts` with its train split replaced by the tuning sample (`ts` itself when no sample is asked for or the
    split is not larger than it)."""
    train = ts.frames["train"]
    if sample_rows is None or len(train) <= sample_rows:
        return ts
    return TrainingSet({**ts.frames, "train": tuning_sample(train, sample_rows, seed)}, ts.features, ts.categorical,
                       ts.lineage)


# Tuning ----------------------------------------------------------------------------------------------------------


def _suggest(trial, name: str, space) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


def _within(space, value) -> bool:
    """Whether a preset value lies in a search space (only those are told to the sampler)."""
    if space is None:
        return False
    if space.choices is not None:
        return value in space.choices
    return space.low <= value <= space.high and (not space.integer or float(value).is_integer())


@dataclass
class TunedCandidate:
    name: str
    kind: str
    model: BatchModel
    score: float  # the tuning metric on what the study tuned on (validation split, or mean over the folds)
    trials: list[dict]
    seconds: float
    cv: dict | None = None  # the best trial's cross-validation, when the study tuned on folds
    params: dict = field(default_factory=dict)  # the best trial's settings
    on_sample: BatchModel | None = None
    """The best settings as the trial fitted them on the tuning sample (None: the trials fitted every train row)."""
    reference: BatchModel | None = None
    """The first trial's model when it is exactly the untuned reference fitted on the rows the trials fit (the
    tuning sample, or the whole train split; the candidate fixes no setting of its own): `untuned_references` need
    not fit it again."""

    @property
    def valid_score(self) -> float:
        return self.score


def tune_candidate(cand: CandidateSpec, ts: TrainingSet, spec: UseCaseSpec, trials: int | None = None,
                   timeout: int | None = None, folds: Folds | None | str = "auto",
                   refit: bool = True) -> TunedCandidate:
    """Optuna search within the budget (trials and seconds per candidate), known-good settings first; on `folds`
    (default: `tuning_folds`) or the validation split. Returns the best configuration fitted on train: the best
    trial's own model when the trials fitted every train row (a refit would repeat that very fit), refitted on
    every train row when they fitted the tuning sample, unless `refit` is False (then the model is the sample's
    fit: `refit_on_train` finishes it)."""
    import optuna

    from batchml.specs import SearchSpace

    tuning = spec.training.tuning
    folds = tuning_folds(spec, ts) if folds == "auto" else folds
    n_trials = trials or tuning.trials
    timeout = timeout if timeout is not None else tuning.timeout_seconds
    trees = cand.kind in ("xgboost", "lightgbm")
    search = dict(cand.search or {k: SearchSpace(**v) for k, v in DEFAULT_SEARCH[cand.kind].items()})
    base: dict[str, Any] = {}
    if folds is not None and trees and "n_estimators" not in cand.params and "n_estimators" not in search:
        if cand.search:  # the spec's own ranges: keep them, with the reference's number of trees
            base["n_estimators"] = PRESETS[cand.kind][0]["n_estimators"]
        else:
            search["n_estimators"] = SearchSpace(**CV_ROUNDS)
    presets = [{k: v for k, v in p.items() if k not in cand.params} for p in PRESETS[cand.kind]][:n_trials]
    metric = tuning.metric
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=tuning.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=len(presets), n_warmup_steps=1))
    for i, preset in enumerate(presets):
        study.enqueue_trial({k: v for k, v in preset.items() if _within(search.get(k), v)}, user_attrs={"preset": i})
    y_valid = ts.y("valid")
    # trials on a sample of train (folds only exist below cv_below_rows: small sets are never sampled)
    trial_ts = ts if folds is not None else sampled_training_set(ts, tuning.sample_rows, tuning.seed)
    kept: dict[str, Any] = {}  # the best trial so far: number, value, fitted model
    reference: dict[str, BatchModel] = {}

    if trial_ts is not ts:
        log.info("%s: trials fit %d of %d train rows (tuning.sample_rows)%s", cand.name, len(trial_ts.frames["train"]),
                 len(ts.frames["train"]), ", the best is refitted on all of them" if refit else "")

    def objective(trial) -> float:
        preset = trial.user_attrs.get("preset")
        if preset is not None:  # exactly the known-good settings (suggested too, so the sampler learns from them)
            params = dict(presets[preset])
            for name, space in search.items():
                if name in params and _within(space, params[name]):
                    _suggest(trial, name, space)
        else:
            params = {**base, **{name: _suggest(trial, name, space) for name, space in search.items()}}
        trial.set_user_attr("params", params)
        if folds is not None:
            def prune(i: int, per_fold: list[dict]) -> None:
                trial.report(float(np.mean([f[metric] for f in per_fold])), i)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            cv = cross_validate(cand, params, ts, folds, tuning.seed, after_fold=prune)
            trial.set_user_attr("cv", cv)
            return cv[metric]
        model = fit_candidate(cand, params, trial_ts, tuning.seed,
                              None if preset is not None else tuning.early_stopping_rounds)
        trial.set_user_attr("best_iteration", model.info.get("best_iteration"))
        value = metric_value(metric, y_valid, model.raw_proba(ts.X("valid")))
        if preset == 0 and not cand.params:  # PRESETS[kind][0] on the rows the trials fit (sample or all)
            model.info["fitted_rows"] = len(trial_ts.frames["train"])
            reference["model"] = model
        if not kept or better(metric, value, kept["value"]):
            kept.update(number=trial.number, value=value, model=model)
        return value

    started = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=False)
    seconds = time.perf_counter() - started
    best = study.best_trial
    params, from_preset = best.user_attrs["params"], best.user_attrs.get("preset") is not None
    on = f"{folds.k}-fold CV" if folds is not None else "validation"
    done = [t for t in study.trials if t.state.is_finished()]  # presets the budget left no time for stay queued
    record = {"trials": len(done), "tuning_seconds": round(seconds, 1), "tuned_on": on,
              "trial_train_rows": len(trial_ts.frames["train"]),
              "tuning_score": best.value, "preset": best.user_attrs.get("preset"),
              ("cv_" if folds is not None else "valid_") + metric: best.value}
    trial_model = kept["model"] if kept.get("number") == best.number else None
    fitted_on = trial_ts
    if trial_model is None:  # tuned on folds: no trial fitted the train split, so the best settings are fitted now
        stopping = None if (folds is not None or from_preset) else tuning.early_stopping_rounds
        trial_model, fitted_on = fit_candidate(cand, params, ts, tuning.seed, stopping), ts
    trial_model.info.update(record, fitted_rows=len(fitted_on.frames["train"]))
    history = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.user_attrs.get("params"),
                "preset": t.user_attrs.get("preset"),
                "seconds": round(t.duration.total_seconds(), 2) if t.duration else None} for t in done]
    log.info("%s: %d trials in %.0f s, best %s %s %.4f (%s%s)", cand.name, len(done), seconds, on, metric,
             best.value, params, ", a known-good preset" if from_preset else "")
    tuned = TunedCandidate(cand.name, cand.kind, trial_model, float(best.value), history, seconds,
                           cv=best.user_attrs.get("cv"), params=params,
                           on_sample=trial_model if fitted_on is not ts else None, reference=reference.get("model"))
    if refit and tuned.on_sample is not None:
        tuned.model = refit_on_train(cand, tuned, ts, spec)
    return tuned


def refit_on_train(cand: CandidateSpec, tuned: TunedCandidate, ts: TrainingSet, spec: UseCaseSpec) -> BatchModel:
    """A candidate tuned on the tuning sample, its best settings fitted on every train row (stopping early on the
    validation split, unless they are a preset); the tuning record carried over."""
    stopping = None if tuned.model.info.get("preset") is not None else spec.training.tuning.early_stopping_rounds
    model = fit_candidate(cand, tuned.params, ts, spec.training.tuning.seed, stopping)
    model.info.update({k: v for k, v in tuned.model.info.items() if k not in model.info})
    model.info["fitted_rows"] = len(ts.frames["train"])
    return model


def train_candidates(spec: UseCaseSpec, ref: TrainingSetRef, trials: int | None = None,
                     timeout: int | None = None) -> SelectedModel:
    """The training DAG's step: tune every candidate within the budget, pick the best on what they tuned on (the
    same folds or the same validation split for all), calibrate it. Each candidate is saved as
    `candidate_<name>.joblib`, the selection as `selected.joblib`, the tuning history in `candidates.json`.

    When the trials fitted the tuning sample (`tuning.sample_rows`), only the selected candidate and the baseline
    (the gate compares them on the test window) are refitted on every train row; the others keep their fit on the
    sample, which is what their tuning score measured (`fitted_rows` says which is which). The selected candidate's
    fit on the sample is kept as `candidate_<name>_on_sample.joblib`: the untuned references, fitted on the same
    sample, are compared with it."""
    import joblib

    folder = Path(ref.run_dir)
    ts = TrainingSet.load(folder / "data")
    metric = spec.training.tuning.metric
    folds = tuning_folds(spec, ts)
    tuned_on = ({"mode": "cv", "folds": folds.k, "rows": len(folds.frame), "seed": folds.seed} if folds is not None
                else {"mode": "validation", "rows": len(ts.frames["valid"])})
    tuned: dict[str, TunedCandidate] = {}
    for i, cand in enumerate(spec.training.candidates, start=1):
        log.info("Tuning candidate %d/%d: %s (%s) on %s", i, len(spec.training.candidates), cand.name, cand.kind,
                 f"{folds.k}-fold CV" if folds is not None else "the validation split")
        tuned[cand.name] = tune_candidate(cand, ts, spec, trials=trials, timeout=timeout, folds=folds, refit=False)
    best = spec.training.candidates[0].name
    for name, t in tuned.items():
        if better(metric, t.score, tuned[best].score):
            best = name
    for stale in folder.glob("reference_*.joblib"):  # an earlier attempt's, if the task is retried
        stale.unlink()
    for stale in folder.glob("candidate_*_on_sample.joblib"):
        stale.unlink()
    results = []
    references: set[str] = set()
    for cand in spec.training.candidates:
        t = tuned[cand.name]
        if t.on_sample is not None and cand.name in (best, spec.training.baseline):
            started = time.perf_counter()
            t.model = refit_on_train(cand, t, ts, spec)
            log.info("%s: best settings refitted on all %d train rows in %.0f s", cand.name,
                     t.model.info["fitted_rows"], time.perf_counter() - started)
            if cand.name == best:
                joblib.dump(t.on_sample, folder / f"candidate_{cand.name}_on_sample.joblib")
        if t.reference is not None and cand.kind not in references:
            references.add(cand.kind)
            joblib.dump(t.reference, folder / f"reference_{cand.kind}.joblib")  # untuned_references reuses it
        joblib.dump(t.model, folder / f"candidate_{cand.name}.joblib")
        results.append({"name": cand.name, "kind": cand.kind, "score": t.score, "trials": len(t.trials),
                        "seconds": round(t.seconds, 1), "params": t.model.info["params"],
                        "preset": t.model.info.get("preset"), "cv": t.cv, "history": t.trials,
                        "fitted_rows": t.model.info.get("fitted_rows"),
                        "trial_train_rows": t.model.info.get("trial_train_rows")})
    selected = next(r for r in results if r["name"] == best)
    started = time.perf_counter()
    model = calibrate(tuned[best].model, ts, spec.training.calibration)
    log.info("%s: calibration %s on the %d validation rows in %.0f s", best, model.info.get("calibration", "none"),
             len(ts.frames["valid"]), time.perf_counter() - started)
    joblib.dump(model, folder / "selected.joblib")
    (folder / "candidates.json").write_text(json.dumps({"selected": best, "metric": metric,
                                                        "tuned_on": tuned_on, "candidates": results},
                                                       indent=2, default=str))
    log.info("Selected %s (%s %s %.4f)", best, tuned_on["mode"], metric, selected["score"])
    return SelectedModel(run_dir=ref.run_dir, selected=best, valid_score=selected["score"])
