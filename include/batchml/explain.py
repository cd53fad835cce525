"""SHAP explanations of a model for the model card: importance, beeswarm, dependence of the top features and
explained predictions, per original feature and labelled with the feature table's own values.

A tree model sees a categorical feature as an ordinal code and the baseline as one-hot columns; the explanation
here folds one-hot contributions back into their feature (exact for a linear model) and carries the original values
as SHAP's `display_data`, so every plot says `plan = basic`, not `plan = 0`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.models import BatchModel
from batchml.reports import pyplot, save_figure


@dataclass
class Explanation:
    importance: pd.DataFrame  # feature, mean_abs_shap
    plots: dict[str, Path] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)


def shap_explanation(model: BatchModel, rows: pd.DataFrame):
    """A `shap.Explanation` of the model's log-odds on `rows`, one column per feature of the feature table:
    `data` is numeric (category codes in sorted order, as the trees' encoder has them) for positions and colours,
    `display_data` the original values for labels."""
    import shap

    X = model.transform(rows)
    if model.kind == "logistic_regression":
        explainer = shap.LinearExplainer(model.estimator, X)
    else:
        explainer = shap.TreeExplainer(model.estimator)
    raw = explainer(X)
    values, base = raw.values, raw.base_values
    if values.ndim == 3:  # some explainers return one slice per class
        values, base = values[:, :, 1], base[:, 1] if np.ndim(base) == 2 else base
    features, per = model.per_feature(values)
    data = np.empty((len(rows), len(features)), dtype="float64")
    display = np.empty((len(rows), len(features)), dtype=object)
    for j, name in enumerate(features):
        column = rows[name]
        if name in model.categorical:
            labels = column.astype(str)
            data[:, j] = pd.Categorical(labels, categories=sorted(labels.unique())).codes
            display[:, j] = labels.to_numpy(dtype=object)
        else:
            data[:, j] = column.to_numpy(dtype="float64")
            display[:, j] = [float(v) for v in data[:, j]]
    return shap.Explanation(values=per, base_values=base, data=data, display_data=display, feature_names=features)


def bar_figure(values):
    import shap

    shap.plots.bar(values, max_display=15, show=False)
    return pyplot().gcf()


def beeswarm_figure(values):
    import shap

    shap.plots.beeswarm(values, max_display=15, show=False)
    return pyplot().gcf()


def dependence_figure(values, feature: str):
    """SHAP value against the feature's value (category names on the axis), coloured by its strongest interaction."""
    import shap

    ax = shap.plots.scatter(values[:, feature], color=values, show=False)
    return ax.figure


def waterfall_figure(values, row: int):
    import shap

    shap.plots.waterfall(values[row], max_display=10, show=False)
    return pyplot().gcf()


def explain(model: BatchModel, frame: pd.DataFrame, folder: Path, sample: int, seed: int = 0) -> Explanation:
    """SHAP with `shap.TreeExplainer` (a linear explainer for the baseline) on a sample of `frame`: importance,
    beeswarm, dependence of the top three features, and two explained predictions (the highest and the median
    score)."""
    rows = frame.sample(n=min(sample, len(frame)), random_state=seed) if len(frame) > sample else frame
    rows = rows.reset_index(drop=True)
    values = shap_explanation(model, rows)
    names = list(values.feature_names)
    importance = (
        pd.DataFrame({"feature": names, "mean_abs_shap": np.abs(values.values).mean(axis=0)})
        .sort_values("mean_abs_shap", ascending=False)
        .reset_index(drop=True)
    )
    plots = {"shap_bar": save_figure(bar_figure(values), folder / "shap_bar.png"),
             "shap_beeswarm": save_figure(beeswarm_figure(values), folder / "shap_beeswarm.png")}
    for i, feat in enumerate(importance.feature.head(3)):
        plots[f"shap_dependence_{i + 1}"] = save_figure(dependence_figure(values, feat),
                                                        folder / f"shap_dependence_{i + 1}_{feat}.png")
    p = model.predict_proba(rows)
    picks = {"highest score": int(np.argmax(p)), "median score": int(np.argsort(p)[len(p) // 2])}
    examples = []
    for title, idx in picks.items():
        key = f"shap_example_{len(examples) + 1}"
        plots[key] = save_figure(waterfall_figure(values, idx), folder / f"{key}.png")
        contrib = pd.Series(values.values[idx], index=names).sort_values(key=np.abs, ascending=False).head(5)
        examples.append({
            "title": title, "plot": key, "score": float(p[idx]),
            "top": [{"feature": f, "value": display_value(rows.iloc[idx][f]), "shap": float(v)}
                    for f, v in contrib.items()],
        })
    return Explanation(importance, plots, examples)


def display_value(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)
