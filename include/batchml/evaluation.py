"""Honest evaluation on the test window: the training DAG's `evaluate` step.

It scores every candidate on the test window the gate uses, and computes for the selected model: headline metrics
with bootstrap confidence intervals (and the baseline's), calibration, lift by decile, per-segment figures, fairness
per group of the sensitive attributes, SHAP (`explain`), cross-validation next to the untuned references on the same
folds, and the monitoring reference stored with the version. `model_card` renders it all into one HTML page.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from batchml.metrics import (
    HEADLINE,
    bootstrap_intervals,
    calibration_table,
    decile_table,
    disparity_ratios,
    expected_calibration_error,
    group_rates,
    headline,
    metric_value,
    rule_scores,
    segment_table,
)
from batchml.models import BatchModel
from batchml.reports import pyplot, save_figure
from batchml.results import EvaluatedModel, SelectedModel
from batchml.specs import UseCaseSpec

if TYPE_CHECKING:
    from batchml.datasets import TrainingSet

log = logging.getLogger(__name__)

# Plots -------------------------------------------------------------------------------------------------------------


def plot_curves(y: np.ndarray, scores: dict[str, np.ndarray], folder: Path,
                budget_points: dict[str, tuple[float, float]] | None = None) -> dict[str, Path]:
    """ROC and precision-recall curves of several models on the same rows; `budget_points`: each model's (recall,
    precision) at the daily alert budget, marked on its precision-recall curve."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        a.plot(fpr, tpr, label=f"{name} (AUC {metric_value('roc_auc', y, p):.3f})")
        prec, rec, _ = precision_recall_curve(y, p)
        b.plot(rec, prec, label=f"{name} (AP {metric_value('pr_auc', y, p):.3f})")
    for i, (name, (recall, precision)) in enumerate((budget_points or {}).items()):
        b.scatter([recall], [precision], marker="o", color=f"C{i}", zorder=3,
                  label=f"{name} at the alert budget (recall {recall:.2f}, precision {precision:.2f})")
    a.plot([0, 1], [0, 1], ls=":", c="grey")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test window)")
    b.axhline(float(np.mean(y)), ls=":", c="grey", label="base rate")
    b.set(xlabel="recall", ylabel="precision", title="Precision-recall (test window)")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    return {"curves": save_figure(fig, folder / "curves.png")}


def plot_calibration(y: np.ndarray, p: np.ndarray, folder: Path) -> dict[str, Path]:
    plt = pyplot()
    table = calibration_table(y, p)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    top = max(table.predicted.max(), table.observed.max()) * 1.05
    ax.plot([0, top], [0, top], ls=":", c="grey", label="perfect")
    ax.plot(table.predicted, table.observed, marker="o", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration (test, 10 bins)")
    ax.legend(fontsize=8)
    return {"calibration": save_figure(fig, folder / "calibration.png")}


def plot_lift(deciles: pd.DataFrame, folder: Path) -> dict[str, Path]:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(deciles.decile, deciles.lift)
    a.axhline(1.0, ls=":", c="grey")
    a.set(xlabel="score decile (1 = highest risk)", ylabel="lift", title="Lift by decile")
    b.plot([0, *deciles.decile], [0, *deciles.cumulative_capture], marker="o", label="model")
    b.plot([0, 10], [0, 1], ls=":", c="grey", label="random")
    b.set(xlabel="deciles targeted", ylabel="share of positives captured", title="Cumulative capture")
    b.legend(fontsize=8)
    return {"lift": save_figure(fig, folder / "lift.png")}


# The evaluate step -----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def window_metrics(spec: UseCaseSpec, frame: pd.DataFrame, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The test-window metrics of one model's scores: the headline metrics, and those at the daily alert budget when
    the spec sets `training.alert_budget` (days: the feature partition each row comes from)."""
    from batchml.specs import AS_OF_COLUMN

    budget = spec.training.alert_budget
    days = frame[AS_OF_COLUMN].astype(str).to_numpy() if budget is not None else None
    return headline(y, p, days, budget)


def rule_baselines(spec: UseCaseSpec, frame: pd.DataFrame, y: np.ndarray) -> dict[str, dict]:
    """Each rule of `training.rules` scored on the test window: {name: {"scores", "test"}}."""
    out = {}
    for name, rule in spec.training.rules.items():
        p = rule_scores(frame, rule.above, rule.below, rule.equals, rule.rank_by)
        out[name] = {"scores": p, "test": window_metrics(spec, frame, y, p)}
    return out


def flag_threshold(spec: UseCaseSpec) -> tuple[str, float]:
    """The band whose threshold defines "flagged" for the fairness figures: `training.fairness.flag_band`, else the
    lowest band of `scoring.bands` (every row that is not `low`)."""
    bands = spec.scoring.bands
    name = spec.training.fairness.flag_band or min(bands, key=bands.get)
    return name, float(bands[name])


def fairness_report(spec: UseCaseSpec, frame: pd.DataFrame, y: np.ndarray, scores: dict[str, np.ndarray]) -> dict:
    """Per sensitive attribute: each group's selection rate, TPR, FPR and ROC AUC at the flag threshold for the
    first model of `scores` (the new one), and the disparity ratios (min/max across groups) of every model."""
    fairness = spec.training.fairness
    if not fairness.attributes:
        return {}
    band, threshold = flag_threshold(spec)
    out: dict[str, Any] = {"band": band, "threshold": threshold, "min_group_rows": fairness.min_group_rows,
                           "attributes": {}}
    first = next(iter(scores))
    for attr in fairness.attributes:
        groups = frame[attr]
        if groups.nunique() > fairness.max_groups:
            out["attributes"][attr] = {"problem": f"{groups.nunique()} distinct values, more than "
                                                  f"training.fairness.max_groups={fairness.max_groups}: band it into "
                                                  "a categorical feature to compare groups"}
            continue
        tables = {name: group_rates(groups, y, p, threshold) for name, p in scores.items()}
        out["attributes"][attr] = {
            "groups": [{k: _plain(v) for k, v in row.items()} for row in tables[first].to_dict("records")],
            "ratios": {name: disparity_ratios(t, fairness.min_group_rows) for name, t in tables.items()}}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return None if isinstance(value, float) and np.isnan(value) else value


def compare_with_references(spec: UseCaseSpec, ts: TrainingSet, summary: dict, selected_model: BatchModel,
                            test_metrics: dict) -> tuple[dict, dict]:
    """Cross-validation of the tuned candidates and the untuned references on the same folds (where there are
    folds), their test-split ROC AUC, and which references the new model falls below. Returns (cross_validation by
    candidate, references)."""
    import joblib

    from batchml.training import REFERENCE_KINDS, cross_validate, report_folds, rounds_of, untuned_references

    folder = Path(summary["run_dir"])
    by_name = {c.name: c for c in spec.training.candidates}
    selected, seed = summary["selected"], spec.training.tuning.seed
    folds = report_folds(spec, ts)
    tuned_on_folds = summary.get("tuned_on", {}).get("mode") == "cv"
    cross_validation: dict[str, dict] = {}
    if folds is not None:
        for cand in summary["candidates"]:
            if tuned_on_folds and cand.get("cv"):
                cross_validation[cand["name"]] = cand["cv"]
            elif cand["name"] in (selected, spec.training.baseline):
                model = selected_model if cand["name"] == selected else \
                    joblib.load(folder / f"candidate_{cand['name']}.joblib")
                cross_validation[cand["name"]] = cross_validate(by_name[cand["name"]], rounds_of(model), ts, folds,
                                                                seed)
    on_sample = folder / f"candidate_{selected}_on_sample.joblib"
    sample_rows = spec.training.tuning.sample_rows if on_sample.exists() else None
    fitted = {kind: joblib.load(f) for kind in REFERENCE_KINDS if (f := folder / f"reference_{kind}.joblib").exists()}
    rows = untuned_references(spec, ts, folds, sample_rows, fitted)
    on_folds = folds is not None and selected in cross_validation
    ours = cross_validation[selected]["roc_auc"] if on_folds else test_metrics["roc_auc"]
    where = (f"{folds.k}-fold cross-validation of the {len(folds.frame):,} train + validation rows" if on_folds
             else "the test split")
    if sample_rows is not None and not on_folds:
        # the trials fitted the tuning sample, and so did the references: like with like, the tuned settings as
        # fitted on that same sample (the new model itself is refitted on every train row)
        ours = headline(ts.y("test"), joblib.load(on_sample).predict_proba(ts.frames["test"]))["roc_auc"]
        where = (f"the test split, the tuned settings and the references all fitted on the same "
                 f"{rows[0]['fitted_rows']:,}-row tuning sample")
    others = [(r["name"], (r["cv"] if on_folds else r["test"])["roc_auc"], ours) for r in rows]
    baseline = spec.training.baseline
    if baseline != selected:
        base = cross_validation.get(baseline) if on_folds else \
            next(c for c in summary["candidates"] if c["name"] == baseline)["test"]
        if base is not None:  # fitted as the new model is (the same folds, or every train row)
            others.append((f"{baseline} (tuned baseline)", base["roc_auc"],
                           ours if on_folds else test_metrics["roc_auc"]))
    below = [{"name": name, "roc_auc": auc, "new_roc_auc": mine} for name, auc, mine in others if auc > mine + 1e-9]
    if below:
        log.warning("The new model (%s, ROC AUC %.4f on %s) is below %s", selected, ours, where,
                    ", ".join(f"{b['name']} {b['roc_auc']:.4f}" for b in below))
    references = {"on": "cv" if on_folds else "test", "where": where, "roc_auc": ours, "rows": rows,
                  "below": below, "selection_on_folds": tuned_on_folds,
                  "tuned_on": summary.get("tuned_on", {"mode": "validation"})}
    return cross_validation, references


def evaluate(spec: UseCaseSpec, selected: SelectedModel) -> EvaluatedModel:
    """Test-window metrics of every candidate with bootstrap intervals, calibration, lift, segments, fairness, SHAP,
    cross-validation against the untuned references, and the monitoring reference; written to `evaluation.json`
    and `reference/` in the run folder."""
    import joblib

    from batchml.datasets import TrainingSet
    from batchml.drift import build_profile, save_reference
    from batchml.explain import explain

    seconds: dict[str, float] = {}
    mark = [time.perf_counter()]

    def lap(step: str) -> None:  # where the evaluation's time goes (a line in the log, `seconds` in the json)
        now = time.perf_counter()
        seconds[step] = round(now - mark[0], 1)
        mark[0] = now

    folder = Path(selected.run_dir)
    plots_dir = folder / "plots"
    ts = TrainingSet.load(folder / "data")
    y, test = ts.y("test"), ts.frames["test"]
    model = joblib.load(folder / "selected.joblib")
    p = model.predict_proba(test)
    summary = _read_json(folder / "candidates.json")
    scores = {}
    for cand in summary["candidates"]:
        cand_p = p if cand["name"] == summary["selected"] else \
            joblib.load(folder / f"candidate_{cand['name']}.joblib").predict_proba(test)
        cand["test"] = window_metrics(spec, test, y, cand_p)
        scores[cand["name"]] = cand_p
    baseline = next(c for c in summary["candidates"] if c["name"] == spec.training.baseline)
    test_metrics = window_metrics(spec, test, y, p)
    rules = rule_baselines(spec, test, y)
    curves = {**scores, **{f"rule {name}": r["scores"] for name, r in rules.items()}}
    at_budget = {name: (m["recall_at_budget"], m["precision_at_budget"]) for name, m in
                 [*((c["name"], c["test"]) for c in summary["candidates"]),
                  *((f"rule {n}", r["test"]) for n, r in rules.items())] if "recall_at_budget" in m}
    lap("test_predictions")
    deciles = decile_table(y, p)
    plots = {**plot_curves(y, curves, plots_dir, at_budget), **plot_calibration(y, p, plots_dir),
             **plot_lift(deciles, plots_dir)}
    lap("plots")
    explanation = explain(model, test, plots_dir, spec.training.shap_sample)
    plots.update(explanation.plots)
    lap("shap")
    shap_seconds = seconds["shap"]
    cross_validation, references = compare_with_references(spec, ts, {**summary, "run_dir": str(folder)}, model,
                                                           test_metrics)
    lap("references")
    confidence = spec.training.confidence
    pair = {"new": p, "baseline": scores[baseline["name"]]}
    intervals = bootstrap_intervals(y, pair, HEADLINE, confidence.resamples, confidence.level, confidence.seed,
                                    differences=(("new", "baseline"),)) if confidence.resamples else {}
    lap("intervals")
    result = {
        "selected": summary["selected"],
        "test_metrics": test_metrics,
        "baseline": {"name": baseline["name"], "test_metrics": baseline["test"]},
        "rules": {name: r["test"] for name, r in rules.items()},
        "alert_budget": spec.training.alert_budget,
        "intervals": intervals,
        "ece": expected_calibration_error(y, p),
        "deciles": deciles.to_dict("records"),
        "segments": segment_table(test, y, p, spec.training.segments).to_dict("records"),
        "fairness": fairness_report(spec, test, y, pair),
        "shap_importance": explanation.importance.head(20).to_dict("records"),
        "shap_examples": explanation.examples,
        "shap_seconds": round(shap_seconds, 1),
        "cross_validation": cross_validation,
        "references": references,
        "shap_rows": min(spec.training.shap_sample, len(test)),
        "plots": {k: str(v) for k, v in plots.items()},
        "selected_info": model.info,
    }
    lap("tables")
    # the reference monitoring compares against: the test window's features and scores, stored with the version
    profile, sample = build_profile(test[ts.features], ts.categorical, p, result["shap_importance"], test_metrics)
    save_reference(folder / "reference", profile, sample)
    lap("monitoring_reference")
    result["seconds"] = seconds
    _write_json(folder / "candidates.json", summary)
    _write_json(folder / "evaluation.json", result)
    log.info("Test window: roc_auc %.4f (baseline %.4f); evaluation steps in s: %s", test_metrics["roc_auc"],
             baseline["test"]["roc_auc"], seconds)
    return EvaluatedModel(run_dir=selected.run_dir, selected=selected.selected, valid_score=selected.valid_score,
                          test_roc_auc=test_metrics["roc_auc"],
                          baseline_test_roc_auc=baseline["test"]["roc_auc"])


def flat_metrics(evaluation: dict, summary: dict) -> dict[str, float]:
    """The figures of `evaluation.json` as flat metrics (MLflow): intervals, cross-validation, references, fairness."""
    out: dict[str, float] = {}
    for name, ranges in (evaluation.get("intervals") or {}).get("models", {}).items():
        role = "test" if name == "new" else f"{name}_test"
        for m, (low, high) in ((m, r) for m, r in ranges.items() if r):
            out.update({f"{role}_{m}_ci_low": low, f"{role}_{m}_ci_high": high})
    for name, cv in evaluation.get("cross_validation", {}).items():
        role = "cv" if name == summary["selected"] else f"{name}_cv"
        out.update({f"{role}_{m}": cv[m] for m in ("roc_auc", "roc_auc_std", "pr_auc", "brier")})
    for ref in evaluation.get("references", {}).get("rows", []):
        out[f"untuned_{ref['kind']}_test_roc_auc"] = ref["test"]["roc_auc"]
        if "cv" in ref:
            out[f"untuned_{ref['kind']}_cv_roc_auc"] = ref["cv"]["roc_auc"]
    for attr, figures in (evaluation.get("fairness") or {}).get("attributes", {}).items():
        for ratio, r in figures.get("ratios", {}).get("new", {}).items():
            if r.get("value") is not None:
                out[f"fairness_{attr}_{ratio}"] = r["value"]
    return out
