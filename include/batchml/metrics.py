"""Metric functions shared by tuning, evaluation and monitoring: the same numbers everywhere they are compared.

Everything takes labels (0/1) and probabilities and returns numbers or small tables.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from batchml.specs import LOWER_IS_BETTER

HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "top_decile_capture")


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


def headline(y: np.ndarray, p: np.ndarray, days: np.ndarray | pd.Series | None = None,
             budget: float | None = None) -> dict[str, float]:
    """Headline metrics plus the base rate and size; with `budget` and the day of each row (`days`), the metrics
    at the daily alert budget too (`budget_metrics`)."""
    out = {name: metric_value(name, y, p) for name in HEADLINE}
    out["top_decile_lift"] = out["top_decile_capture"] / 0.1
    out["base_rate"] = float(np.mean(y))
    out["rows"] = int(len(y))
    if budget is not None and days is not None:
        out.update(budget_metrics(y, p, days, budget))
    return out


def budget_metrics(y: np.ndarray, p: np.ndarray, days: np.ndarray | pd.Series, share: float) -> dict[str, float]:
    """How a team with a fixed daily review budget fares: each day, the ceil(share x day's rows) highest scores are
    alerted (ties broken by row order, as a stable sort would); `recall_at_budget` = alerted positives / all
    positives of the window, `precision_at_budget` = alerted positives / alerts, `alerts`, and the lowest alerted
    score of each day averaged (`budget_threshold`). A window without positives has a recall of 0."""
    y, p = np.asarray(y), np.asarray(p, dtype="float64")
    codes = pd.factorize(np.asarray(days))[0]
    alerted = np.zeros(len(y), dtype=bool)
    thresholds = []
    for day in np.unique(codes):
        idx = np.flatnonzero(codes == day)
        k = int(np.ceil(share * len(idx) - 1e-9))
        if k:
            top = idx[np.argsort(-p[idx], kind="stable")[:k]]
            alerted[top] = True
            thresholds.append(float(p[top].min()))
    hits, positives, alerts = int(y[alerted].sum()), int(y.sum()), int(alerted.sum())
    return {"recall_at_budget": hits / positives if positives else 0.0,
            "precision_at_budget": hits / alerts if alerts else 0.0, "alerts": alerts,
            "budget_threshold": float(np.mean(thresholds)) if thresholds else 1.0}


def rule_scores(frame: pd.DataFrame, above: dict[str, float], below: dict[str, float], equals: dict[str, object],
                rank_by: str | None = None) -> np.ndarray:
    """Scores of a rule baseline (specs.RuleSpec): rows where every condition holds in [0.5, 1), the others in
    [0, 0.5), and within each by the percentile rank of `rank_by` (ties without it). Only the order matters: a rule
    ranks, it does not estimate a probability."""
    flag = np.ones(len(frame), dtype=bool)
    for col, value in above.items():
        flag &= frame[col].to_numpy(dtype="float64") > value
    for col, value in below.items():
        flag &= frame[col].to_numpy(dtype="float64") < value
    for col, value in equals.items():
        flag &= (frame[col] == value).to_numpy()
    rank = frame[rank_by].rank(pct=True, method="average").to_numpy() if rank_by else np.full(len(frame), 0.5)
    return (flag.astype("float64") + 0.999 * rank) / 2


def decile_table(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Rows ranked by score into ten equal groups: positives, rate, lift and cumulative capture per decile."""
    order = np.argsort(-p, kind="stable")
    groups = np.array_split(order, 10)
    total, base = max(int(y.sum()), 1), float(np.mean(y))
    rows, captured = [], 0
    for i, idx in enumerate(groups, start=1):
        pos = int(y[idx].sum())
        captured += pos
        rate = pos / max(len(idx), 1)
        rows.append({"decile": i, "rows": len(idx), "positives": pos, "rate": rate,
                     "lift": rate / base if base else 0.0, "cumulative_capture": captured / total,
                     "min_score": float(p[idx].min()) if len(idx) else 0.0})
    return pd.DataFrame(rows)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed rate in equal-count bins of the score (scikit-learn's quantile calibration curve),
    with the rows of each bin."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    # the same quantile edges calibration_curve uses, for the size of each non-empty bin
    edges = np.percentile(p, np.linspace(0, 100, bins + 1))
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    return pd.DataFrame({"predicted": predicted, "observed": observed, "rows": counts[counts > 0]})


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    table = calibration_table(y, p, bins)
    return float((table.rows * (table.predicted - table.observed).abs()).sum() / table.rows.sum())


def segment_table(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, segments: list[str]) -> pd.DataFrame:
    """The headline metrics per value of each segment column (AUC is blank where a group has one class)."""
    rows = []
    for col in segments:
        for value, idx in frame.groupby(col, observed=True).indices.items():
            ys, ps = y[idx], p[idx]
            two_classes = 0 < ys.sum() < len(ys)
            rows.append({
                "segment": col, "value": value, "rows": len(idx), "positives": int(ys.sum()),
                "rate": float(ys.mean()), "mean_score": float(ps.mean()),
                "roc_auc": metric_value("roc_auc", ys, ps) if two_classes else None,
                "pr_auc": metric_value("pr_auc", ys, ps) if two_classes else None,
                "brier": metric_value("brier", ys, ps),
            })
    return pd.DataFrame(rows)


# Bootstrap confidence intervals ------------------------------------------------------------------------------------


class _Ranked:
    """One model's scores sorted once (highest first, ties grouped), so each bootstrap resample is a weighting of
    the same rows (how often each row was drawn): O(rows) per resample instead of a sort, and the per-row terms
    of the Brier score and the log loss computed once (a resample only weights them)."""

    def __init__(self, y: np.ndarray, p: np.ndarray):
        self.order = np.argsort(-p, kind="stable")
        self.y, self.p = np.asarray(y, dtype="float64")[self.order], np.asarray(p, dtype="float64")[self.order]
        starts = np.flatnonzero(np.r_[True, np.diff(self.p) != 0])
        self.starts = starts if len(starts) < len(self.p) else None  # first row of each group of tied scores
        q = np.clip(self.p, 1e-7, 1 - 1e-7)
        self.squared_error = (self.p - self.y) ** 2
        self.row_log_loss = -(self.y * np.log(q) + (1 - self.y) * np.log(1 - q))

    def _groups(self, values: np.ndarray) -> np.ndarray:
        return values if self.starts is None else np.add.reduceat(values, self.starts)

    def values(self, w: np.ndarray, metrics: tuple[str, ...]) -> dict[str, float]:
        """Metrics of the sample in which row i (original order) appears w[i] times."""
        w = np.asarray(w, dtype="float64")[self.order]
        y = self.y
        wp = w * y
        wn = w - wp
        total = w.sum()
        P = wp.sum()
        N = total - P
        out: dict[str, float] = {}
        pos_g, neg_g = self._groups(wp), self._groups(wn)
        cum_pos = np.cumsum(pos_g)
        if "roc_auc" in metrics:  # P(score of a positive > score of a negative), ties count half
            out["roc_auc"] = float((neg_g @ cum_pos - 0.5 * (neg_g @ pos_g)) / (P * N)) if P and N else np.nan
        if "pr_auc" in metrics:  # scikit-learn's average precision: precision at each threshold x recall gained
            cum_all = np.cumsum(self._groups(w))
            precision = np.divide(cum_pos, cum_all, out=np.zeros_like(cum_pos), where=cum_all > 0)
            out["pr_auc"] = float(pos_g @ precision / P) if P else np.nan
        if "brier" in metrics:
            out["brier"] = float(w @ self.squared_error / total)
        if "log_loss" in metrics:
            out["log_loss"] = float(w @ self.row_log_loss / total)
        if "top_decile_capture" in metrics:  # the first round(10%) rows by score, as metric_value ranks them
            k = max(1, int(round(total * 0.1)))
            drawn = np.cumsum(w)
            i = int(np.searchsorted(drawn, k, side="right"))  # rows before i are taken whole, row i in part
            captured = w[:i] @ y[:i] + ((k - (drawn[i - 1] if i else 0.0)) * y[i] if i < len(w) else 0.0)
            out["top_decile_capture"] = float(captured / max(P, 1))
        return out


def bootstrap_intervals(y: np.ndarray, scores: dict[str, np.ndarray], metrics: tuple[str, ...] = HEADLINE,
                        resamples: int = 500, level: float = 0.95, seed: int = 0,
                        differences: tuple[tuple[str, str], ...] = ()) -> dict:
    """Percentile bootstrap intervals of each model's metrics on the same rows: every model sees the same
    resamples (drawn from `seed`), so intervals of differences between models (`differences`: (a, b) pairs,
    a - b) are paired. Returns {"models": {name: {metric: [low, high]}}, "differences": {"a - b": {...}},
    "resamples", "level", "seed"}."""
    from concurrent.futures import ThreadPoolExecutor

    y = np.asarray(y)
    ranked = {name: _Ranked(y, p) for name, p in scores.items()}
    draws: dict[str, dict[str, list[float]]] = {name: {m: [] for m in metrics} for name in scores}
    n = len(y)

    def resample(seq: np.random.SeedSequence) -> dict[str, dict[str, float]]:
        w = np.bincount(np.random.default_rng(seq).integers(0, n, n), minlength=n)
        return {name: r.values(w, metrics) for name, r in ranked.items()}

    # one seed per resample (so the result does not depend on the threads); numpy releases the GIL in the O(rows)
    # work, so the resamples of a large test window run on every core (about 0.2 s each per model at 2 M rows)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for values in pool.map(resample, np.random.SeedSequence(seed).spawn(resamples)):
            for name, got in values.items():
                for m, v in got.items():
                    draws[name][m].append(v)
    alpha = (1 - level) / 2

    def interval(values) -> list[float]:
        values = np.asarray(values, dtype="float64")
        values = values[np.isfinite(values)]
        return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))] if len(values) else []

    out = {"resamples": resamples, "level": level, "seed": seed,
           "models": {name: {m: interval(v) for m, v in d.items()} for name, d in draws.items()},
           "differences": {}}
    for a, b in differences:
        out["differences"][f"{a} - {b}"] = {m: interval(np.subtract(draws[a][m], draws[b][m])) for m in metrics}
    return out


# Fairness ----------------------------------------------------------------------------------------------------------

FAIRNESS_RATES = ("selection_rate", "tpr", "fpr", "roc_auc")


def group_rates(groups: pd.Series, y: np.ndarray, p: np.ndarray, threshold: float) -> pd.DataFrame:
    """Per group: rows, positives, base rate, mean score, the share flagged (score >= threshold: selection rate),
    the share of positives flagged (TPR), of negatives flagged (FPR), and ROC AUC (blank with one class)."""
    flagged = np.asarray(p) >= threshold
    rows = []
    for value, idx in groups.groupby(groups, observed=True, sort=True).indices.items():
        ys, fs = y[idx], flagged[idx]
        pos, neg = ys == 1, ys == 0
        rows.append({"group": value, "rows": len(idx), "positives": int(pos.sum()), "base_rate": float(ys.mean()),
                     "mean_score": float(np.mean(p[idx])), "selection_rate": float(fs.mean()),
                     "tpr": float(fs[pos].mean()) if pos.any() else None,
                     "fpr": float(fs[neg].mean()) if neg.any() else None,
                     "roc_auc": metric_value("roc_auc", ys, p[idx]) if pos.any() and neg.any() else None})
    return pd.DataFrame(rows)


def disparity_ratios(table: pd.DataFrame, min_rows: int) -> dict[str, dict]:
    """For each rate: min/max across the groups with at least `min_rows` rows and a defined value, with the groups
    at both ends. 1 is parity; a ratio is 1 when every compared group's rate is 0, and None (cannot be checked)
    with fewer than two comparable groups."""
    out = {}
    for rate in FAIRNESS_RATES:
        comparable = table[(table["rows"] >= min_rows) & table[rate].notna()]
        if len(comparable) < 2:
            out[f"{rate}_ratio"] = {"value": None, "low": None, "high": None, "groups": len(comparable)}
            continue
        values = comparable[rate].astype(float)
        lo, hi = comparable.loc[values.idxmin()], comparable.loc[values.idxmax()]
        ratio = 1.0 if hi[rate] == 0 else float(lo[rate] / hi[rate])
        out[f"{rate}_ratio"] = {"value": ratio, "groups": len(comparable),
                                "low": {"group": _plain(lo["group"]), "value": float(lo[rate])},
                                "high": {"group": _plain(hi["group"]), "value": float(hi[rate])}}
    return out


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
