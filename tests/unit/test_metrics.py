"""Metric functions: the bootstrap's weighted metrics equal scikit-learn's, its intervals behave like intervals,
and the fairness figures per group are what they are by hand."""

import numpy as np
import pandas as pd
import pytest

from batchml.metrics import HEADLINE, _Ranked, bootstrap_intervals, disparity_ratios, group_rates, metric_value


def _scores(n: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(0, 0.2, n), 0.001, 0.999)
    if ties:
        p = np.round(p, 1)  # many tied scores, of both classes
    return y, p


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_with_unit_weights_are_scikit_learns(ties):
    y, p = _scores(700, seed=1, ties=ties)
    got = _Ranked(y, p).values(np.ones(len(y)), HEADLINE)
    for m in HEADLINE:
        assert got[m] == pytest.approx(metric_value(m, y, p), abs=1e-12), m


def test_a_resample_as_weights_equals_the_resampled_rows():
    y, p = _scores(500, seed=2)
    idx = np.random.default_rng(3).integers(0, len(y), len(y))
    got = _Ranked(y, p).values(np.bincount(idx, minlength=len(y)), HEADLINE)
    for m in HEADLINE:
        assert got[m] == pytest.approx(metric_value(m, y[idx], p[idx]), abs=1e-12), m


def test_bootstrap_intervals_are_seeded_cover_the_estimate_and_shrink_with_rows():
    y, p = _scores(400, seed=4)
    a = bootstrap_intervals(y, {"m": p}, ("roc_auc", "brier"), resamples=300, seed=7)
    b = bootstrap_intervals(y, {"m": p}, ("roc_auc", "brier"), resamples=300, seed=7)
    assert a == b  # same seed, same intervals
    low, high = a["models"]["m"]["roc_auc"]
    assert low < metric_value("roc_auc", y, p) < high
    y4, p4 = _scores(1600, seed=4)
    low4, high4 = bootstrap_intervals(y4, {"m": p4}, ("roc_auc",), resamples=300, seed=7)["models"]["m"]["roc_auc"]
    assert 0.35 < (high4 - low4) / (high - low) < 0.7  # four times the rows: about half the width


def test_paired_differences_separate_a_better_model_and_not_a_model_from_itself():
    y, p = _scores(800, seed=5)
    noise = np.random.default_rng(6).normal(0, 0.35, len(y))
    worse = np.clip(p + noise, 0, 1)
    out = bootstrap_intervals(y, {"good": p, "same": p.copy(), "worse": worse}, ("roc_auc",), resamples=300,
                              differences=(("good", "worse"), ("good", "same")))
    low, high = out["differences"]["good - worse"]["roc_auc"]
    assert metric_value("roc_auc", y, p) > metric_value("roc_auc", y, worse) and low > 0
    assert out["differences"]["good - same"]["roc_auc"] == [0.0, 0.0]


def test_group_rates_and_disparity_ratios_by_hand():
    # group a: 4 rows (2 positives), scores flag rows 0, 1, 2; group b: 4 rows (1 positive), flags row 4 only;
    # group c: 1 row, too small to compare
    groups = pd.Series(["a", "a", "a", "a", "b", "b", "b", "b", "c"])
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.7, 0.1, 0.8, 0.2, 0.3, 0.1, 0.9])
    table = group_rates(groups, y, p, threshold=0.5).set_index("group")
    assert table.loc["a", "selection_rate"] == 0.75 and table.loc["b", "selection_rate"] == 0.25
    assert table.loc["a", "tpr"] == 1.0 and table.loc["a", "fpr"] == 0.5
    assert table.loc["b", "tpr"] == 1.0 and table.loc["b", "fpr"] == 0.0
    assert table.loc["a", "roc_auc"] == 0.75 and table.loc["b", "roc_auc"] == 1.0
    assert pd.isna(table.loc["c", "fpr"]) and pd.isna(table.loc["c", "roc_auc"])  # one class: undefined
    ratios = disparity_ratios(table.reset_index(), min_rows=2)
    sel = ratios["selection_rate_ratio"]
    assert sel["value"] == pytest.approx(1 / 3) and sel["low"]["group"] == "b" and sel["high"]["group"] == "a"
    assert ratios["tpr_ratio"]["value"] == 1.0
    assert ratios["fpr_ratio"]["value"] == 0.0  # b flags no negative, a flags half of them
    assert ratios["roc_auc_ratio"]["value"] == pytest.approx(0.75)
    alone = disparity_ratios(table.reset_index(), min_rows=5)  # no group has 5 rows: nothing to compare
    assert alone["selection_rate_ratio"]["value"] is None
