"""The drift report on hand-made data: every feature's status with its thresholds and a legend, a summary, data
quality, the last days' trend, importance ranks for every feature, histograms named by feature without empty bins."""

import datetime as dt
import re

import numpy as np
import pandas as pd

from batchml.drift import bin_shares, build_profile, complete_importance, drift_summary, feature_drift, quantile_edges
from batchml.drift_report import histogram_bins, render_drift_report
from batchml.results import RealizedPerformance, RetrainDecision

D = dt.date(2026, 7, 8)
NUMERIC = ["txn_count_7d", "txn_mean_amount_7d", "tickets_count_30d", "tenure_days"]


def _frame(rng, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "plan": rng.choice(["basic", "standard", "premium"], n),
        "txn_count_7d": rng.poisson(0.8 + shift, n).astype(float),   # 0 for ~45% of the rows
        "txn_mean_amount_7d": rng.gamma(2.0, 40.0 * (1 + shift), n),
        "tickets_count_30d": rng.poisson(0.1, n).astype(float),      # 0 for ~90%: few bins
        "tenure_days": rng.uniform(0, 900, n),
    })


class _LinearModel:
    """What complete_importance needs from a model: its inputs, and contributions per feature."""

    def __init__(self, weights: dict[str, float]):
        self.weights = weights

    def transform(self, frame):
        return frame[list(self.weights)].apply(
            lambda c: c if pd.api.types.is_numeric_dtype(c) else c.astype("category").cat.codes.astype(float))

    def contributions(self, X):
        return np.column_stack([(X[c] - X[c].mean()) * w for c, w in self.weights.items()])

    def per_feature(self, contrib):
        return list(self.weights), contrib


def _details(churn_spec, tmp_path):
    rng = np.random.default_rng(5)
    reference, today = _frame(rng, 4000), _frame(rng, 3000, shift=0.8)
    today.loc[:99, "plan"] = "family"  # a category the reference never saw
    today.loc[:199, "tenure_days"] = np.nan
    profile, sample = build_profile(reference, ["plan"], rng.beta(2, 8, 4000),
                                    [{"feature": "txn_mean_amount_7d", "mean_abs_shap": 0.9}], {"roc_auc": 0.74})
    importance = complete_importance(profile, sample, _LinearModel(
        {"plan": 0.01, "txn_count_7d": 0.5, "txn_mean_amount_7d": 0.01, "tickets_count_30d": 2.0, "tenure_days": 1e-3}))
    result = feature_drift(churn_spec, profile, sample, today, rng.beta(3, 6, 3000))
    details = {"as_of": D.isoformat(), "model_version": 1, "rows": 3000, "figures": result.as_records(),
               "histograms": result.histograms, "summary": drift_summary(churn_spec, profile, result),
               "test_metrics": {"roc_auc": 0.74, "rows": 4000}, "reference_rows": 4000, "importance": importance,
               "reference_nulls": {f: ref.get("null_share", 0.0) for f, ref in profile["features"].items()}}
    return profile, details


def test_no_bin_is_empty_by_construction():
    counts = np.array([0.0] * 450 + [1.0] * 350 + [2.0] * 150 + [3.0] * 50)
    edges = quantile_edges(counts)
    assert edges[0] > counts.min()  # no "<0" bin
    assert (bin_shares(counts, edges) > 0).all()
    # a histogram of an older profile (an edge at the minimum) leaves its empty end bins out
    labels, ref, cur = histogram_bins({"kind": "numeric", "edges": [0.0, 1.0, 2.0], "ref": [0.0, 0.45, 0.35, 0.2],
                                       "cur": [0.0, 0.3, 0.4, 0.3]})
    assert labels == ["0–1", "1–2", "≥2"] and ref == [0.45, 0.35, 0.2]
    labels, _, cur = histogram_bins({"kind": "categorical", "categories": ["a", "b", "__unseen__"],
                                     "ref": [0.5, 0.5, 0.0], "cur": [0.6, 0.4, 0.0]})
    assert labels == ["a", "b"]


def test_every_feature_gets_an_importance_rank():
    rng = np.random.default_rng(1)
    frame = _frame(rng, 500)
    profile, sample = build_profile(frame, ["plan"], rng.random(500), [{"feature": "tenure_days", "mean_abs_shap": 1}],
                                    {})
    ranked = complete_importance(profile, sample, _LinearModel({"plan": 0.0, "txn_count_7d": 1.0,
                                                                "txn_mean_amount_7d": 0.001, "tickets_count_30d": 10.0,
                                                                "tenure_days": 0.0}))
    assert [r["feature"] for r in ranked][:1] == ["tenure_days"]  # the stored ranking comes first
    assert {r["feature"] for r in ranked} == set(profile["features"])
    rest = ranked[1:]
    assert [r["source"] for r in rest] == ["sample"] * 4
    assert [r["mean_abs_shap"] for r in rest] == sorted([r["mean_abs_shap"] for r in rest], reverse=True)


def test_the_report_shows_status_thresholds_legend_history_and_named_histograms(churn_spec, tmp_path):
    profile, details = _details(churn_spec, tmp_path)
    past = pd.DataFrame(
        [{"as_of_date": D - dt.timedelta(days=d), "metric": "score_psi", "feature": None, "value": 0.02 * (5 - d)}
         for d in range(5)]
        + [{"as_of_date": D - dt.timedelta(days=d), "metric": "psi", "feature": "txn_mean_amount_7d",
            "value": 0.1 * (5 - d)} for d in range(5)])
    decision = RetrainDecision(request=False, reasons=["score PSI 0.300 >= 0.25"], scheduled_for=D + dt.timedelta(30),
                               drift_since=D)
    performance = RealizedPerformance(as_of=D, scored_on=D - dt.timedelta(days=30),
                                      roles={"champion": {"rows": 900.0, "positives": 40.0, "roc_auc": 0.71,
                                                          "model_version": 1.0}})
    plots = tmp_path / "plots"
    out = render_drift_report(churn_spec, details, performance, decision, plots, tmp_path / "report.html", past)
    html = out.read_text()
    # a status per feature, with why and the thresholds, and a legend
    rows = re.findall(r'<tr class="(alert|warn|ok|skipped)"><td class="l">(\w+)</td><td class="l">([^<]*)</td>'
                      r"<td>(\d*)</td>", html)
    assert {name for _, name, _, _ in rows} == set(profile["features"])
    status = {name: s for s, name, _, _ in rows}
    assert status["txn_mean_amount_7d"] == "alert" and status["plan"] == "warn"  # 3.3% unseen: >= 1%, < 5%
    assert re.search(r"<td class=\"l\">PSI \d\.\d{3} ≥ 0\.25", html)  # why, against which threshold
    assert "unseen 0.033 ≥ 0.01" in html
    assert all(rank for _, _, _, rank in rows), "every feature has an importance rank"
    descriptions = {name: words for _, name, words, _ in rows}
    assert descriptions["txn_count_7d"] == "number of transactions in the last 7 days"
    for fragment in ("PSI ≥ 0.25, or KS ≥ 0.2, or unseen-category share ≥ 0.05", "below every warn threshold"):
        assert fragment in html
    # summary, data quality, the trend of the last days, the schedule
    assert "features in alert / warn" in html and "rows today (reference 4,000)" in html
    assert re.search(r"<td class=\"l\">plan</td><td>3\.3%</td>", html)  # unseen categories
    assert re.search(r"<td class=\"l\">tenure_days</td><td></td><td>6\.7%</td><td>0\.0%</td>", html)  # nulls
    assert "5 monitored date(s) read from the monitoring table" in html and (plots / "history_psi.png").exists()
    assert f"scheduled for {D + dt.timedelta(30)}" in html
    # histograms named by feature, with their words; no generic names
    assert (plots / "hist_txn_mean_amount_7d.png").exists() and (plots / "hist_plan.png").exists()
    assert 'alt="txn_mean_amount_7d: reference vs today"' in html
    assert "<code>txn_count_7d</code>: number of transactions in the last 7 days" in html
    assert "feature_0" not in html and not list(plots.glob("feature_*.png"))
