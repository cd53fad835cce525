"""Drift and realized performance against the reference of the model version that produced the scores.

Reference profile (built at training time, stored with the model version as MLflow artifacts): for each feature,
decile bin edges and shares (numeric) or category shares (categorical), a sample of the test window for two-sample
tests, the score distribution on the test window, SHAP importance, and the test-window metrics.

Decisions use effect sizes, not p-values: with thousands of rows every p-value is tiny. PSI (on the reference bins)
and the Kolmogorov-Smirnov statistic decide for numeric features, PSI for categorical ones (chi-square and Cramér's
V are reported beside it); the score distribution's PSI is the prediction drift.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError
from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)

PROFILE_VERSION = 1
UNSEEN = "__unseen__"
EPS = 1e-4


class MonitoringError(BatchMLError):
    """Monitoring cannot compare (no reference for the version, features absent from it, ...)."""


# Reference profile -----------------------------------------------------------------------------------------------


def quantile_edges(values: np.ndarray, bins: int = 10) -> list[float]:
    """Interior cut points of equal-count bins (duplicates removed, so discrete features get fewer bins)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return []
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    return [float(e) for e in edges]


def bin_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Share of values in each bin defined by interior `edges` (len(edges) + 1 bins; a value equal to an edge goes
    to the upper bin)."""
    values = values[np.isfinite(values)]
    idx = np.searchsorted(np.asarray(edges), values, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return counts / max(counts.sum(), 1.0)


def category_shares(values: pd.Series, categories: list[str]) -> np.ndarray:
    """Shares of each reference category, plus a last bucket for categories the reference never saw."""
    counts = values.astype(str).value_counts()
    known = np.array([counts.get(c, 0) for c in categories], dtype=float)
    unseen = float(counts.sum() - known.sum())
    out = np.append(known, unseen)
    return out / max(out.sum(), 1.0)


def build_profile(features: pd.DataFrame, categorical: list[str], scores: np.ndarray,
                  importance: list[dict], test_metrics: dict, sample_rows: int = 5000, seed: int = 0):
    """The reference profile (JSON-able dict) and a sample of reference rows (features + score) for KS tests."""
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "rows": int(len(features)), "features": {},
                               "importance": importance, "test_metrics": test_metrics}
    for col in features.columns:
        if col in categorical:
            cats = sorted(features[col].astype(str).unique().tolist())
            profile["features"][col] = {"kind": "categorical", "categories": cats,
                                        "shares": category_shares(features[col], cats)[:-1].tolist()}
        else:
            values = features[col].to_numpy(dtype="float64")
            edges = quantile_edges(values)
            profile["features"][col] = {"kind": "numeric", "edges": edges, "shares": bin_shares(values, edges).tolist(),
                                        "null_share": float(np.mean(~np.isfinite(values)))}
    edges = quantile_edges(scores)
    profile["score"] = {"edges": edges, "shares": bin_shares(scores, edges).tolist()}
    sample = features.assign(score=scores)
    if len(sample) > sample_rows:
        sample = sample.sample(n=sample_rows, random_state=seed)
    return profile, sample.reset_index(drop=True)


def save_reference(folder: Path, profile: dict, sample: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.json").write_text(json.dumps(profile, indent=1))
    sample.to_parquet(folder / "sample.parquet", index=False)
    return folder


def load_reference(folder: Path) -> tuple[dict, pd.DataFrame]:
    profile_file = folder / "profile.json"
    if not profile_file.exists():
        raise MonitoringError(f"{folder}: no reference profile (profile.json); retrain the model to create one")
    return json.loads(profile_file.read_text()), pd.read_parquet(folder / "sample.parquet")


# Statistics ------------------------------------------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray, eps: float = EPS) -> float:
    """Population stability index: sum((cur - ref) * ln(cur / ref)) over bins, shares floored at `eps`."""
    ref = np.clip(np.asarray(reference, dtype=float), eps, None)
    cur = np.clip(np.asarray(current, dtype=float), eps, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (scipy)."""
    from scipy.stats import ks_2samp

    a, b = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def chi_square(ref_shares: np.ndarray, current_counts: np.ndarray) -> tuple[float, float, float]:
    """Chi-square goodness of fit of current counts to reference shares: statistic, p-value, Cramér's V."""
    from scipy.stats import chisquare

    n = current_counts.sum()
    expected = np.clip(ref_shares, EPS, None)
    expected = expected / expected.sum() * n
    stat, p = chisquare(current_counts, expected)
    k = max(len(ref_shares) - 1, 1)
    return float(stat), float(p), float(np.sqrt(stat / (n * k))) if n else float("nan")


def status_of(value: float, warn: float, alert: float) -> str:
    if value is None or not np.isfinite(value):
        return "skipped"
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


# Drift for one date ----------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the monitoring table."""

    metric: str
    value: float | None
    status: str = "info"
    feature: str | None = None
    threshold: float | None = None
    model_role: str = "champion"
    detail: str = ""


@dataclass
class DriftResult:
    figures: list[Figure] = field(default_factory=list)
    histograms: dict[str, dict] = field(default_factory=dict)  # feature -> {edges or categories, ref, cur}

    def by_metric(self, metric: str) -> list[Figure]:
        return [f for f in self.figures if f.metric == metric]

    def as_records(self) -> list[dict]:
        return [asdict(f) for f in self.figures]


def feature_drift(spec: UseCaseSpec, profile: dict, sample: pd.DataFrame, current: pd.DataFrame,
                  scores: np.ndarray) -> DriftResult:
    """PSI, KS, chi-square, null and unseen shares per feature, and the score's PSI, for one date."""
    mon = spec.monitoring
    result = DriftResult()
    ref_features = profile["features"]
    for col, ref in ref_features.items():
        if col not in current.columns:
            result.figures.append(Figure("psi", None, "skipped", col, detail="feature absent from today's table"))
            continue
        if ref["kind"] == "numeric":
            values = current[col].to_numpy(dtype="float64")
            cur = bin_shares(values, ref["edges"])
            value = psi(ref["shares"], cur)
            stat, pvalue = ks(sample[col].to_numpy(dtype="float64"), values)
            result.figures += [
                Figure("psi", value, status_of(value, mon.psi_warn, mon.psi_alert), col, mon.psi_alert),
                Figure("ks_statistic", stat, status_of(stat, mon.ks_warn, mon.ks_alert), col, mon.ks_alert,
                       detail=f"p={pvalue:.2e}"),
                Figure("null_share", float(np.mean(~np.isfinite(values))), "info", col),
            ]
            result.histograms[col] = {"kind": "numeric", "edges": ref["edges"], "ref": ref["shares"], "cur": cur.tolist()}
        else:
            cats = ref["categories"]
            cur = category_shares(current[col], cats)
            ref_shares = np.append(np.asarray(ref["shares"]), 0.0)
            value = psi(ref_shares, cur)
            counts = cur * len(current)
            stat, pvalue, cramers_v = chi_square(ref_shares, counts)
            result.figures += [
                Figure("psi", value, status_of(value, mon.psi_warn, mon.psi_alert), col, mon.psi_alert),
                Figure("chi_square", stat, "info", col, detail=f"p={pvalue:.2e}, Cramér's V={cramers_v:.3f}"),
                Figure("unseen_share", float(cur[-1]), status_of(float(cur[-1]), mon.unseen_warn, mon.unseen_alert),
                       col, mon.unseen_alert),
                Figure("null_share", float(current[col].isna().mean()), "info", col),
            ]
            result.histograms[col] = {"kind": "categorical", "categories": [*cats, UNSEEN], "ref": ref_shares.tolist(),
                                      "cur": cur.tolist()}
    extra = [c for c in current.columns if c not in ref_features]
    if extra:
        result.figures.append(Figure("features_not_in_reference", float(len(extra)), "info",
                                     detail=", ".join(sorted(extra)[:20])))
    score_cur = bin_shares(scores, profile["score"]["edges"])
    value = psi(profile["score"]["shares"], score_cur)
    result.figures.append(Figure("score_psi", value, status_of(value, mon.psi_warn, mon.psi_alert), None, mon.psi_alert))
    result.histograms["score"] = {"kind": "numeric", "edges": profile["score"]["edges"],
                                  "ref": profile["score"]["shares"], "cur": score_cur.tolist()}
    result.figures.append(Figure("mean_score", float(np.mean(scores)), "info"))
    result.figures.append(Figure("rows", float(len(current)), "info"))
    return result


def important_features(profile: dict, top: int) -> list[str]:
    return [row["feature"] for row in profile.get("importance", [])[:top]]


def drift_summary(spec: UseCaseSpec, profile: dict, result: DriftResult) -> dict:
    """What the retraining policy looks at: score PSI, and which important features drifted (PSI alert)."""
    top = important_features(profile, spec.monitoring.retrain.important_features)
    alerts = {f.feature: f.value for f in result.by_metric("psi") if f.status == "alert"}
    drifted = [f for f in top if f in alerts]
    score_psi = next((f.value for f in result.by_metric("score_psi")), None)
    compared = [f for f in result.by_metric("psi") if f.value is not None]
    return {"score_psi": score_psi, "drifted_important": drifted,
            "drifted_important_share": len(drifted) / len(top) if top else 0.0,
            "psi_alert_features": sorted(alerts, key=lambda k: -alerts[k]),
            "drifted_share": len(alerts) / len(compared) if compared else 0.0}


# Realized performance --------------------------------------------------------------------------------------------


def realized_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from batchml.evaluation import expected_calibration_error
    from batchml.training import metric_value

    out = {"rows": float(len(y)), "positives": float(y.sum())}
    if 0 < y.sum() < len(y):
        out.update({
            "roc_auc": metric_value("roc_auc", y, p), "pr_auc": metric_value("pr_auc", y, p),
            "calibration_error": expected_calibration_error(y, p),
            "top_decile_capture": metric_value("top_decile_capture", y, p),
        })
    return out


# Retraining policy -----------------------------------------------------------------------------------------------


@dataclass
class RetrainDecision:
    request: bool
    reasons: list[str]
    suppressed: str | None = None
    figures: dict = field(default_factory=dict)


def retrain_decision(spec: UseCaseSpec, as_of: dt.date, drift: dict | None, performance: dict | None,
                     test_metrics: dict, last_request: dt.date | None, training_active: bool,
                     data_ok: bool = True) -> RetrainDecision:
    """Check -> decide: does drift or decay cross the policy's thresholds, and may a retrain be requested now?"""
    policy = spec.monitoring.retrain
    reasons: list[str] = []
    if drift:
        if drift.get("score_psi") is not None and drift["score_psi"] >= policy.score_psi:
            reasons.append(f"score PSI {drift['score_psi']:.3f} >= {policy.score_psi}")
        if drift.get("drifted_important_share", 0) >= policy.drifted_important_share and drift.get("drifted_important"):
            reasons.append(
                f"{len(drift['drifted_important'])} of the top {policy.important_features} features drifted "
                f"(PSI >= {spec.monitoring.psi_alert}): {', '.join(drift['drifted_important'])}"
            )
        elif drift.get("drifted_share", 0) >= policy.drifted_share and drift.get("psi_alert_features"):
            names = drift["psi_alert_features"]
            reasons.append(
                f"{drift['drifted_share']:.0%} of the features drifted (PSI >= {spec.monitoring.psi_alert}), most: "
                f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
            )
    if performance and "roc_auc" in performance and "roc_auc" in test_metrics:
        drop = test_metrics["roc_auc"] - performance["roc_auc"]
        if drop >= policy.auc_drop:
            reasons.append(f"realized ROC AUC {performance['roc_auc']:.3f} is {drop:.3f} below the test window's "
                           f"{test_metrics['roc_auc']:.3f} (margin {policy.auc_drop})")
    figures = {"drift": drift or {}, "performance": performance or {}, "as_of": as_of.isoformat()}
    decision = RetrainDecision(bool(reasons), reasons, figures=figures)
    if not reasons:
        return decision
    if not data_ok:
        decision.request, decision.suppressed = False, "data-quality problems are not drift: fix the data first"
    elif not policy.enabled:
        decision.request, decision.suppressed = False, "retraining on drift is disabled in the spec (recommend only)"
    elif training_active:
        decision.request, decision.suppressed = False, "a training run for this use case is already active"
    elif last_request is not None and (as_of - last_request).days < policy.cooldown_days:
        decision.request = False
        decision.suppressed = (f"cool-down: a retrain was requested on {last_request} "
                               f"(at most one per {policy.cooldown_days} days)")
    return decision
