"""The model card a reviewer reads: one self-contained HTML page per registered version, built from the evaluate
step's figures (`evaluation.json`), the tuning record (`candidates.json`), the gate's verdict and the spec's `card`
section (intended and out-of-scope use, limitations, owner and contact)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchml.reports import render_page
from batchml.specs import UseCaseSpec

if TYPE_CHECKING:
    from batchml.datasets import TrainingSet

MODEL_CARD_METRICS = ["roc_auc", "pr_auc", "log_loss", "brier", "top_decile_capture"]
FAIRNESS_COLUMNS = [("selection_rate", "selection rate"), ("tpr", "TPR"), ("fpr", "FPR"), ("roc_auc", "ROC AUC")]


def label_text(spec: UseCaseSpec) -> str:
    label = spec.label
    if spec.horizon_days == 0:
        return (f"{label.name} = column {label.column!r} of {spec.entity.source} equals {label.positive!r}; "
                f"rows split at random (stratified, seed {spec.training.split.seed})")
    if spec.is_event:
        where = "; ".join(f"{col} in {values}" for col, values in label.where.items())
        return (f"{label.name} = a row of {label.source} referring to the {spec.entity.source} event "
                f"({label.key}){f' with {where}' if where else ''} within {label.horizon_days} days after it; "
                f"split by day, every {spec.training.split.every_days} day(s)")
    return f"{label.name} = an event in {label.source} within {label.horizon_days} days after the snapshot date"


def _round(params: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in params.items()}


def _cv_rows(evaluation: dict, summary: dict) -> list[dict]:
    """Tuned candidates, then the untuned references, on the same folds."""
    selected, baseline = summary["selected"], evaluation["baseline"]["name"]
    rows = []
    for name, cv in evaluation.get("cross_validation", {}).items():
        role = ("new model and baseline, tuned" if name == selected == baseline else "new model, tuned"
                if name == selected else "baseline, tuned" if name == baseline else "tuned")
        rows.append({"name": f"{name} ({role})", "selected": name == selected, "tuned": True, **cv})
    for ref in evaluation.get("references", {}).get("rows", []):
        if "cv" in ref:
            rows.append({"name": ref["name"], "selected": False, "tuned": False, "params": _round(ref["params"]),
                         **ref["cv"]})
    return rows


def _fairness(evaluation: dict) -> dict:
    fairness = evaluation.get("fairness") or {}
    if not fairness:
        return {}
    attributes = []
    for attr, figures in fairness["attributes"].items():
        ratios = figures.get("ratios", {})
        attributes.append({"name": attr, "problem": figures.get("problem"), "groups": figures.get("groups", []),
                           "ratios": ratios.get("new", {}), "baseline_ratios": ratios.get("baseline", {})})
    return {**fairness, "attributes": attributes, "columns": FAIRNESS_COLUMNS}


def _card(spec: UseCaseSpec) -> dict[str, Any]:
    card = spec.card
    return {"intended_use": card.intended_use, "out_of_scope": card.out_of_scope, "limitations": card.limitations,
            "owner": spec.owner, "contact": card.contact,
            "stated": bool(card.intended_use or card.out_of_scope or card.limitations or card.contact)}


def render_model_card(spec: UseCaseSpec, folder: Path, ts: TrainingSet, version: int, decision: dict,
                      tags: dict[str, str], mlflow_run_id: str, champion_intervals: dict | None = None) -> Path:
    """The model card of a registered version: one self-contained HTML page in the run folder.
    `champion_intervals`: bootstrap intervals of the current champion (and of the difference) on the same rows."""
    evaluation = json.loads((folder / "evaluation.json").read_text())
    summary = json.loads((folder / "candidates.json").read_text())
    lineage = ts.lineage
    plots = {k: Path(v) for k, v in evaluation["plots"].items()}
    models = (evaluation.get("intervals") or {}).get("models", {})
    comparison = [{"name": f"new model ({summary['selected']})", "metrics": evaluation["test_metrics"],
                   "intervals": models.get("new", {})},
                  {"name": f"baseline ({evaluation['baseline']['name']}, logistic regression)",
                   "metrics": evaluation["baseline"]["test_metrics"], "intervals": models.get("baseline", {})}]
    differences = dict((evaluation.get("intervals") or {}).get("differences", {}))
    if decision.get("champion_metrics"):
        comparison.append({"name": f"current champion v{decision['champion_version']}",
                           "metrics": decision["champion_metrics"],
                           "intervals": (champion_intervals or {}).get("models", {}).get("champion", {})})
        differences.update((champion_intervals or {}).get("differences", {}))
    info = evaluation["selected_info"]
    references = evaluation.get("references", {})
    context = {
        "use_case": spec.name, "description": spec.description, "model_name": spec.model_name, "version": version,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "card": _card(spec),
        "decision": decision,
        "champion": {"candidate": summary["selected"], "kind": info.get("kind"),
                     "calibration": info.get("calibration", "none")},
        "metric_names": MODEL_CARD_METRICS,
        "comparison": comparison, "test_metrics": evaluation["test_metrics"], "ece": evaluation["ece"],
        "confidence": {k: v for k, v in (evaluation.get("intervals") or {}).items() if k in ("resamples", "level",
                                                                                               "seed")},
        "differences": differences,
        "deciles": evaluation["deciles"], "segments": evaluation["segments"],
        "fairness": _fairness(evaluation),
        "shap_explainer": "shap.LinearExplainer" if info.get("kind") == "logistic_regression" else "shap.TreeExplainer",
        "shap_rows": evaluation["shap_rows"],
        "dependence_plots": sorted(k for k in plots if k.startswith("shap_dependence")),
        "examples": evaluation["shap_examples"],
        "tuning_metric": summary["metric"],
        "tuned_on": summary.get("tuned_on", {"mode": "validation"}),
        "candidates": [{"name": c["name"], "kind": c["kind"], "trials": c["trials"], "seconds": c["seconds"],
                        "score": c.get("score", c.get("valid_score")), "test_roc_auc": c["test"]["roc_auc"],
                        "preset": c.get("preset"), "params": _round(c["params"]),
                        "fitted_rows": c.get("fitted_rows"), "trial_train_rows": c.get("trial_train_rows"),
                        "selected": c["name"] == summary["selected"]} for c in summary["candidates"]],
        "train_rows": lineage["rows"]["train"],
        "references": references,
        "reference_tests": [{"name": r["name"], "test_roc_auc": r["test"]["roc_auc"],
                             "fitted_rows": r.get("fitted_rows")} for r in references.get("rows", [])],
        "lineage": lineage,
        "provenance": {"data hash": lineage["data_hash"], "spec sha256": tags["batchml.spec_sha256"],
                       "git commit": tags["batchml.git_commit"], "Airflow run": tags["batchml.airflow_run_id"],
                       "MLflow run": mlflow_run_id, "trigger": tags["batchml.trigger"],
                       **({"reason": tags["batchml.reason"]} if "batchml.reason" in tags else {})},
        "label_text": label_text(spec),
        "cross_validation": _cv_rows(evaluation, summary),
        "feature_count": len(ts.features), "categorical": ts.categorical,
    }
    return render_page("model_card.html.j2", context, plots, folder / "model_card.html")
