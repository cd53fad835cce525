"""Realized performance: how well the scores did once their outcomes are known (labels matured `horizon_days`
after the date scored), read from the score table and the label source.

`realized_metrics` scores one set of (outcome, score) pairs; `realized_by_version` compares model versions over a
range of scored dates, e.g. the champion before a drift-triggered retraining and the version it trained, on the
outcomes after the drift: pooled over every matured date each version scored, and paired on the dates both scored
(the same entities and outcomes, so the comparison is fair).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)


def realized_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from batchml.metrics import expected_calibration_error, metric_value

    out = {"rows": float(len(y)), "positives": float(y.sum()), "label_rate": float(y.mean()) if len(y) else 0.0}
    if 0 < y.sum() < len(y):
        out.update({
            "roc_auc": metric_value("roc_auc", y, p), "pr_auc": metric_value("pr_auc", y, p),
            "calibration_error": expected_calibration_error(y, p),
            "top_decile_capture": metric_value("top_decile_capture", y, p),
        })
    return out


def matured_until(spec: UseCaseSpec, as_of: dt.date) -> dt.date:
    """The newest scored date whose labels have matured by `as_of` (outcomes strictly before `as_of` are known)."""
    return as_of - dt.timedelta(days=spec.horizon_days)


def realized_by_version(spec: UseCaseSpec, eng, raw_root: Path, days: list[dt.date],
                        as_of: dt.date) -> list[dict[str, Any]]:
    """Metrics of every model version that scored `days` (their labels must have matured by `as_of`), one entry per
    version: over all its matured rows (`scope` "pooled") and, when several versions scored some of the same dates,
    on those dates only (`scope` "paired", the same entities and outcomes for each version)."""
    from batchml.datasets import label_snapshots
    from batchml.drift import MonitoringError
    from batchml.score_table import read_score_rows

    late = [d for d in days if d > matured_until(spec, as_of)]
    if late:
        raise MonitoringError(f"labels of {[d.isoformat() for d in late]} have not matured by {as_of} (horizon "
                              f"{spec.horizon_days} days): compare dates up to {matured_until(spec, as_of)}, or "
                              "wait until their outcomes are known")
    key = spec.entity.key
    rows = read_score_rows(eng, spec.score_table, key, days)
    if rows.empty:
        return []
    scored = sorted(rows.as_of_date.unique())
    positives = label_snapshots(spec, raw_root, scored, as_of)
    hits = set(zip(positives[key], positives["as_of_date"], strict=True))
    rows["label"] = [int((k, d) in hits) for k, d in zip(rows[key], rows.as_of_date, strict=True)]
    out: list[dict[str, Any]] = []
    by_version = dict(tuple(rows.groupby("model_version")))
    dates = {v: set(part.as_of_date) for v, part in by_version.items()}
    shared = set.intersection(*dates.values()) if len(dates) > 1 else set()
    for version, part in sorted(by_version.items()):
        scopes = [("pooled", part)]
        if shared:
            scopes.append(("paired", part[part.as_of_date.isin(shared)]))
        for scope, sub in scopes:
            out.append({"model_version": int(version), "scope": scope,
                        "roles": sorted(sub.model_role.unique().tolist()),
                        "first_day": min(sub.as_of_date).isoformat(), "last_day": max(sub.as_of_date).isoformat(),
                        "days": len(set(sub.as_of_date)),
                        **realized_metrics(sub.label.to_numpy(), sub.score.to_numpy())})
    for entry in out:
        log.info("Realized (%s) v%s on %s..%s (%d dates): ROC AUC %s over %d rows", entry["scope"],
                 entry["model_version"], entry["first_day"], entry["last_day"], entry["days"],
                 f"{entry['roc_auc']:.4f}" if "roc_auc" in entry else "n/a", entry["rows"])
    return out
