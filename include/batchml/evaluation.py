"""Honest evaluation on the test window: metrics, calibration, lift, per-segment figures, SHAP, and the model card.

Everything here takes labels and probabilities (or a fitted model and a frame) and returns numbers, tables or
image files; the model card is one self-contained HTML page (images inlined) a person can open anywhere.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batchml.training import BatchModel, metric_value

log = logging.getLogger(__name__)

HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "top_decile_capture")


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Headline metrics plus the base rate and size."""
    out = {name: metric_value(name, y, p) for name in HEADLINE}
    out["top_decile_lift"] = out["top_decile_capture"] / 0.1
    out["base_rate"] = float(np.mean(y))
    out["rows"] = int(len(y))
    return out


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
    """Mean predicted vs observed rate in equal-count bins of the score."""
    order = np.argsort(p, kind="stable")
    out = []
    for idx in np.array_split(order, bins):
        if len(idx):
            out.append({"predicted": float(p[idx].mean()), "observed": float(y[idx].mean()), "rows": len(idx)})
    return pd.DataFrame(out)


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


# Plots -----------------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_curves(y: np.ndarray, scores: dict[str, np.ndarray], folder: Path) -> dict[str, Path]:
    """ROC and precision-recall curves of several models on the same rows."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        a.plot(fpr, tpr, label=f"{name} (AUC {metric_value('roc_auc', y, p):.3f})")
        prec, rec, _ = precision_recall_curve(y, p)
        b.plot(rec, prec, label=f"{name} (AP {metric_value('pr_auc', y, p):.3f})")
    a.plot([0, 1], [0, 1], ls=":", c="grey")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test window)")
    b.axhline(float(np.mean(y)), ls=":", c="grey", label="base rate")
    b.set(xlabel="recall", ylabel="precision", title="Precision-recall (test window)")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    return {"curves": _save(fig, folder / "curves.png")}


def plot_calibration(y: np.ndarray, p: np.ndarray, folder: Path) -> dict[str, Path]:
    plt = _plt()
    table = calibration_table(y, p)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    top = max(table.predicted.max(), table.observed.max()) * 1.05
    ax.plot([0, top], [0, top], ls=":", c="grey", label="perfect")
    ax.plot(table.predicted, table.observed, marker="o", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration (test, 10 bins)")
    ax.legend(fontsize=8)
    return {"calibration": _save(fig, folder / "calibration.png")}


def plot_lift(deciles: pd.DataFrame, folder: Path) -> dict[str, Path]:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(deciles.decile, deciles.lift)
    a.axhline(1.0, ls=":", c="grey")
    a.set(xlabel="score decile (1 = highest risk)", ylabel="lift", title="Lift by decile")
    b.plot([0, *deciles.decile], [0, *deciles.cumulative_capture], marker="o", label="model")
    b.plot([0, 10], [0, 1], ls=":", c="grey", label="random")
    b.set(xlabel="deciles targeted", ylabel="share of positives captured", title="Cumulative capture")
    b.legend(fontsize=8)
    return {"lift": _save(fig, folder / "lift.png")}


# SHAP ------------------------------------------------------------------------------------------------------------


@dataclass
class Explanation:
    importance: pd.DataFrame  # feature, mean_abs_shap
    plots: dict[str, Path] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)


def explain(model: BatchModel, frame: pd.DataFrame, folder: Path, sample: int, seed: int = 0) -> Explanation:
    """SHAP with `shap.TreeExplainer` (a linear explainer for the baseline): importance, beeswarm, dependence of the
    top features, and three explained predictions (highest score, median score, a high-scoring positive)."""
    import shap

    plt = _plt()
    rows = frame.sample(n=min(sample, len(frame)), random_state=seed) if len(frame) > sample else frame
    X = model.transform(rows)
    if model.kind == "logistic_regression":
        explainer = shap.LinearExplainer(model.estimator, X)
    else:
        explainer = shap.TreeExplainer(model.estimator)
    values = explainer(X)
    if values.values.ndim == 3:  # some explainers return one slice per class
        values = values[:, :, 1]
    names = list(X.columns)
    importance = (
        pd.DataFrame({"feature": names, "mean_abs_shap": np.abs(values.values).mean(axis=0)})
        .sort_values("mean_abs_shap", ascending=False)
        .reset_index(drop=True)
    )
    plots: dict[str, Path] = {}
    shap.plots.bar(values, max_display=15, show=False)
    plots["shap_bar"] = _save(plt.gcf(), folder / "shap_bar.png")
    shap.plots.beeswarm(values, max_display=15, show=False)
    plots["shap_beeswarm"] = _save(plt.gcf(), folder / "shap_beeswarm.png")
    for i, feat in enumerate(importance.feature.head(3)):
        shap.plots.scatter(values[:, feat], color=values, show=False)
        plots[f"shap_dependence_{i + 1}"] = _save(plt.gcf(), folder / f"shap_dependence_{i + 1}_{feat}.png")

    p = model.predict_proba(rows)
    picks = {"highest score": int(np.argmax(p)), "median score": int(np.argsort(p)[len(p) // 2])}
    examples = []
    for title, idx in picks.items():
        shap.plots.waterfall(values[idx], max_display=10, show=False)
        key = f"shap_example_{len(examples) + 1}"
        plots[key] = _save(plt.gcf(), folder / f"{key}.png")
        contrib = pd.Series(values.values[idx], index=names).sort_values(key=np.abs, ascending=False).head(5)
        examples.append({
            "title": title, "plot": key, "score": float(p[idx]),
            "top": [{"feature": f, "value": _display(rows.iloc[idx].get(f, X.iloc[idx][f])), "shap": float(v)}
                    for f, v in contrib.items()],
        })
    return Explanation(importance, plots, examples)


def _display(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


# Model card ------------------------------------------------------------------------------------------------------


def _inline(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def render_page(template: str, context: dict[str, Any], plots: dict[str, Path], out: Path) -> Path:
    """Render one of the package's HTML templates into a self-contained page (images inlined as data URIs)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("batchml", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = _fmt
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f}%"
    images = {name: _inline(path) for name, path in plots.items()}
    html = env.get_template(template).render(**context, images=images)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:,.{digits}f}"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    return str(value)


def render_model_card(context: dict[str, Any], plots: dict[str, Path], out: Path) -> Path:
    """The model card: one self-contained HTML page."""
    return render_page("model_card.html.j2", context, plots, out)
