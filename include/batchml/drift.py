"""Drift of one date's features and scores against the reference of the model version that produced the scores.

Reference profile (built at training time, stored with the model version as MLflow artifacts): for each feature,
decile bin edges and shares (numeric) or category shares (categorical), a sample of the test window for two-sample
tests, the score distribution on the test window, SHAP importance, and the test-window metrics.

Decisions use effect sizes, not p-values: with thousands of rows every p-value is tiny. PSI (on the reference bins)
and the Kolmogorov-Smirnov statistic decide for numeric features, PSI for categorical ones (chi-square and Cramér's
V are reported beside it); the score distribution's PSI is the prediction drift. Building a profile is a quantile
per feature; comparing a day is a `searchsorted` and a `bincount` per feature (docs/benchmarks.md has the cost).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError
from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)

PROFILE_VERSION = 2  # 2: no empty bins (profiles of version 1 are read as they are)
UNSEEN = "__unseen__"
EPS = 1e-4


class MonitoringError(BatchMLError):
    """Monitoring cannot compare (no reference for the version, features absent from it, ...)."""


# Reference profile -----------------------------------------------------------------------------------------------


def quantile_edges(values: np.ndarray, bins: int = 10) -> list[float]:
    """Interior cut points of equal-count bins (duplicates removed, so discrete features get fewer bins). No bin is
    empty: every edge is a value of the data (a bin [edge, next edge) holds at least its edge; a value equal to an
    edge goes to the upper bin), and an edge at the minimum, which would leave the bin below it empty (a count that
    is 0 for more than a tenth of the rows), is dropped."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return []
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], method="higher"))
    return [float(e) for e in edges if e > values.min()]


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


def complete_importance(profile: dict, sample: pd.DataFrame, model) -> list[dict]:
    """Importance of every profiled feature: the stored ranking first (a profile may hold only the top features),
    then the others by mean |SHAP contribution| of `model` (the version the profile belongs to) on the reference
    sample. Each entry says where it comes from (`source`: stored or sample)."""
    stored = [{**row, "source": row.get("source", "stored")} for row in profile.get("importance", [])]
    known = {row["feature"] for row in stored}
    rest = [f for f in profile["features"] if f not in known]
    if not rest:
        return stored
    features, per = model.per_feature(model.contributions(model.transform(sample)))
    mean_abs = dict(zip(features, np.abs(per).mean(axis=0).tolist(), strict=True))
    ranked = sorted(rest, key=lambda f: -mean_abs.get(f, 0.0))
    return stored + [{"feature": f, "mean_abs_shap": mean_abs.get(f, 0.0), "source": "sample"} for f in ranked]


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
    from concurrent.futures import ThreadPoolExecutor

    mon = spec.monitoring
    result = DriftResult()
    ref_features = profile["features"]
    # one column per thread: numpy's sorts and searches release the GIL, so columns are compared on every core
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        columns = list(pool.map(lambda item: _column_drift(mon, item[0], item[1], sample, current, len(current)),
                                ref_features.items()))
    for col, (figures, histogram) in zip(ref_features, columns, strict=True):
        result.figures += figures
        if histogram is not None:
            result.histograms[col] = histogram
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
    budget, threshold = spec.training.alert_budget, profile["test_metrics"].get("budget_threshold")
    if budget is not None and threshold is not None:
        # a fixed budget alerts the same share every day whatever the scores do; the share above the threshold
        # the model alerted at on its test days is what moves when scores (or fraud) shift
        rate, ratio = float(np.mean(scores >= threshold)), mon.alert_rate_ratio
        low, high = budget / ratio, budget * ratio
        result.figures.append(Figure(
            "alert_rate", rate, "alert" if not low <= rate <= high else "ok", None, high,
            detail=f"share of the date's rows scoring >= {threshold:.4f}, the threshold of the daily {budget:.2%} "
                   f"alert budget on the test days; expected {low:.2%}..{high:.2%}"))
    result.figures.append(Figure("rows", float(len(current)), "info"))
    return result


def _column_drift(mon, col: str, ref: dict, sample: pd.DataFrame, current: pd.DataFrame,
                  rows: int) -> tuple[list[Figure], dict | None]:
    """One feature's figures and histogram."""
    if col not in current.columns:
        return [Figure("psi", None, "skipped", col, detail="feature absent from today's table")], None
    if ref["kind"] == "numeric":
        values = current[col].to_numpy(dtype="float64")
        cur = bin_shares(values, ref["edges"])
        value = psi(ref["shares"], cur)
        stat, pvalue = ks(sample[col].to_numpy(dtype="float64"), values)
        return [
            Figure("psi", value, status_of(value, mon.psi_warn, mon.psi_alert), col, mon.psi_alert),
            Figure("ks_statistic", stat, status_of(stat, mon.ks_warn, mon.ks_alert), col, mon.ks_alert,
                   detail=f"p={pvalue:.2e}"),
            Figure("null_share", float(np.mean(~np.isfinite(values))), "info", col),
        ], {"kind": "numeric", "edges": ref["edges"], "ref": ref["shares"], "cur": cur.tolist()}
    cats = ref["categories"]
    cur = category_shares(current[col], cats)
    ref_shares = np.append(np.asarray(ref["shares"]), 0.0)
    value = psi(ref_shares, cur)
    stat, pvalue, cramers_v = chi_square(ref_shares, cur * rows)
    return [
        Figure("psi", value, status_of(value, mon.psi_warn, mon.psi_alert), col, mon.psi_alert),
        Figure("chi_square", stat, "info", col, detail=f"p={pvalue:.2e}, Cramér's V={cramers_v:.3f}"),
        Figure("unseen_share", float(cur[-1]), status_of(float(cur[-1]), mon.unseen_warn, mon.unseen_alert),
               col, mon.unseen_alert),
        Figure("null_share", float(current[col].isna().mean()), "info", col),
    ], {"kind": "categorical", "categories": [*cats, UNSEEN], "ref": ref_shares.tolist(), "cur": cur.tolist()}


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
