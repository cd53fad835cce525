"""Batch scoring: pinned model versions, chunked prediction in bounded memory, risk deciles and bands, reason codes.

Two streaming passes over the day's feature partition (`chunk_rows` rows at a time), so peak memory depends on the
chunk size, not on the partition's size:
  1. probabilities of the champion (and the challenger), accumulated into a fixed 100,000-bin histogram: the day's
     decile cut-offs and the cut-off of the top `exact_share` come from it;
  2. deciles, bands and reason codes, written as Arrow batches into one staged Parquet file.

Reason codes are SHAP contributions computed by the boosters themselves (`pred_contribs` / `pred_contrib`), not by
an explainer loop: exact TreeSHAP for the highest-risk share analysts act on, Saabas approximations (XGBoost) for the
rest. A linear baseline's contributions are exact and cheap: coef x (x - mean of training).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from batchml.errors import BatchMLError
from batchml.specs import UseCaseSpec
from batchml.training import BatchModel

log = logging.getLogger(__name__)

BINS = 100_000


class ScoringError(BatchMLError):
    """The day's features cannot be scored (missing or empty partition, columns that do not fit the model, ...)."""


# Contributions ---------------------------------------------------------------------------------------------------


def feature_of_model_column(model: BatchModel) -> list[str]:
    """The feature each model input column comes from (one-hot columns map back to their categorical feature)."""
    prep = model.pipeline[:-1][0] if len(model.pipeline) > 1 else None
    names = list(model.pipeline[:-1].get_feature_names_out())
    if model.kind != "logistic_regression" or prep is None:
        return names
    out = []
    encoder = prep.named_transformers_["cat"]
    cat_names = {f"{col}_{val}": col for col, cats in zip(model.categorical, encoder.categories_, strict=True)
                 for val in cats}
    for n in names:
        out.append(cat_names.get(n, n))
    return out


def contributions(model: BatchModel, X: pd.DataFrame, approximate: bool = False) -> np.ndarray:
    """SHAP contributions per model input column (log-odds), without the bias term; rows x columns."""
    est = model.estimator
    if model.kind == "xgboost":
        import xgboost as xgb

        booster = est.get_booster()
        best = model.info.get("best_iteration")
        rng = (0, best + 1) if best is not None else (0, 0)
        out = booster.predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=approximate, iteration_range=rng)
        return out[:, :-1]
    if model.kind == "lightgbm":
        best = model.info.get("best_iteration")
        out = est.booster_.predict(X, pred_contrib=True, num_iteration=best)
        return np.asarray(out)[:, :-1]
    mean = model.info.get("input_mean")
    mean = np.asarray(mean) if mean is not None else np.zeros(X.shape[1])
    return (np.asarray(X, dtype="float64") - mean) * est.coef_[0]


def per_feature(model: BatchModel, contrib: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Sum model-column contributions per original feature (a no-op for trees, one column per feature)."""
    owners = feature_of_model_column(model)
    features = list(dict.fromkeys(owners))
    if len(features) == len(owners):
        return features, contrib
    index = {f: i for i, f in enumerate(features)}
    out = np.zeros((contrib.shape[0], len(features)))
    for j, owner in enumerate(owners):
        out[:, index[owner]] += contrib[:, j]
    return features, out


def top_reasons(features: list[str], contrib: np.ndarray, frame: pd.DataFrame, top: int):
    """Names, displayed values and impacts of the `top` features with the largest |contribution|, per row."""
    k = min(top, contrib.shape[1])
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    names = np.asarray(features, dtype=object)[order]
    impacts = np.take_along_axis(contrib, order, axis=1)
    values = np.empty(names.shape, dtype=object)
    for j in range(k):
        for feat in np.unique(names[:, j]):
            rows = names[:, j] == feat
            values[rows, j] = _as_text(frame[feat].to_numpy()[rows])
    return names, values, impacts


def _as_text(values: np.ndarray) -> np.ndarray:
    """Feature values as short text (vectorised in Arrow: formatting millions of floats in Python is slow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.dtype.kind == "f":
        values = np.round(values.astype("float64"), 4)
    return np.asarray(pc.cast(pa.array(values), pa.string()).to_numpy(zero_copy_only=False), dtype=object)


def score_table_columns(spec: UseCaseSpec):
    """The score table's columns for this spec (entity, score, band, reasons, carried features, lineage)."""
    from batchml.features import feature_columns
    from batchml.warehouse import score_columns

    kinds = feature_columns(spec)
    return score_columns(spec.entity.key, spec.scoring.reason_codes.top, {c: kinds[c] for c in spec.scoring.columns})


# Scoring a partition ---------------------------------------------------------------------------------------------


@dataclass
class PinnedModel:
    role: str
    name: str
    version: int
    model: BatchModel


@dataclass
class ScoreRun:
    staged_file: str
    rows_in: int
    rows_out: int
    seconds: dict[str, float] = field(default_factory=dict)
    exact_rows: int = 0
    exact_threshold: float = 1.0


def _batches(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    for batch in file.iter_batches(batch_size=rows):
        yield batch.to_pandas()


class _Histogram:
    """Fixed-size histogram of scores in [0, 1]: exact-enough quantiles in constant memory."""

    def __init__(self):
        self.counts = np.zeros(BINS, dtype=np.int64)

    def add(self, p: np.ndarray) -> None:
        self.counts += np.bincount(np.minimum((p * BINS).astype(np.int64), BINS - 1), minlength=BINS)

    def upper_share_cutoff(self, share: float) -> float:
        """The score above which about `share` of the rows lie (1.0 when share is 0)."""
        if share <= 0:
            return np.inf
        total = self.counts.sum()
        above = np.cumsum(self.counts[::-1])
        idx = int(np.searchsorted(above, share * total))
        return (BINS - 1 - min(idx, BINS - 1)) / BINS

    def decile_edges(self) -> np.ndarray:
        """Cut-offs between deciles, highest first: decile 1 = score >= edges[0]."""
        return np.array([self.upper_share_cutoff(q / 10) for q in range(1, 10)])


def check_columns(model: BatchModel, columns: list[str], where: str) -> None:
    missing = [c for c in model.features if c not in columns]
    if missing:
        raise ScoringError(
            f"{where}: columns {missing} of the model's signature are missing from the feature partition; "
            "was the spec's feature list changed without retraining? Retrain, or rebuild the partition."
        )


def score_partition(
    spec: UseCaseSpec,
    features_file: Path,
    models: list[PinnedModel],
    out_file: Path,
    as_of: dt.date,
    run_id: str,
) -> ScoreRun:
    """Score every entity of the feature partition with each pinned model into one staged Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from batchml.warehouse import arrow_schema

    sc = spec.scoring
    key = spec.entity.key
    if not features_file.exists():
        raise ScoringError(f"{features_file}: no feature partition for {as_of}: run {spec.dag_id('features')} first")
    meta = pq.read_metadata(features_file)
    if meta.num_rows == 0:
        raise ScoringError(f"{features_file}: the feature partition for {as_of} is empty; nothing was scored")
    for m in models:
        check_columns(m.model, meta.schema.to_arrow_schema().names, str(features_file))
    timings = dict.fromkeys(("predict", "reason_codes", "write"), 0.0)

    # pass 1: probabilities -> histograms (and a small side file, so pass 2 does not predict again)
    started = time.perf_counter()
    hists = {m.role: _Histogram() for m in models}
    side = out_file.with_suffix(".proba.parquet")
    side_schema = pa.schema([(m.role, pa.float64()) for m in models])
    with pq.ParquetWriter(side, side_schema) as writer:
        for chunk in _batches(features_file, sc.chunk_rows):
            probs = {m.role: m.model.predict_proba(chunk) for m in models}
            for role, p in probs.items():
                hists[role].add(p)
            writer.write_table(pa.table(probs, schema=side_schema))
    timings["predict"] = time.perf_counter() - started

    edges = {role: h.decile_edges() for role, h in hists.items()}
    champion = next(m for m in models if m.role == "champion")
    share = exact_share_within_budget(champion, features_file, sc.reason_codes, meta.num_rows, timings)
    exact_cut = hists["champion"].upper_share_cutoff(share)
    thresholds = list(sc.bands.items())
    columns = score_table_columns(spec)
    schema = arrow_schema(columns)
    scored_at = pd.Timestamp.now(tz="UTC")
    rows_in = rows_out = exact_rows = 0
    side_iter = pq.ParquetFile(side).iter_batches(batch_size=sc.chunk_rows)
    with pq.ParquetWriter(out_file, schema) as writer:
        for chunk in _batches(features_file, sc.chunk_rows):
            probs = next(side_iter).to_pandas()
            rows_in += len(chunk)
            for m in models:
                p = probs[m.role].to_numpy()
                t0 = time.perf_counter()
                reasons = _reason_columns(m, chunk, p, exact_cut, sc) if m.role == "champion" else None
                timings["reason_codes"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                data = {
                    key: chunk[key].astype(str).to_numpy(),
                    "as_of_date": np.full(len(chunk), as_of),
                    "model_role": np.full(len(chunk), m.role),
                    "score": p,
                    "risk_decile": (1 + np.sum(p[:, None] < edges[m.role][None, :], axis=1)).astype("int16"),
                    "risk_band": _bands(p, thresholds),
                }
                for i in range(1, sc.reason_codes.top + 1):
                    names, values, impacts, exact = reasons if reasons else (None, None, None, None)
                    data[f"reason_{i}"] = names[:, i - 1] if names is not None and i <= names.shape[1] else None
                    data[f"reason_{i}_value"] = values[:, i - 1] if values is not None and i <= values.shape[1] else None
                    data[f"reason_{i}_impact"] = impacts[:, i - 1] if impacts is not None and i <= impacts.shape[1] else None
                for col in sc.columns:
                    data[col] = chunk[col].to_numpy()
                data["reasons_exact"] = reasons[3] if reasons else np.zeros(len(chunk), dtype=bool)
                data["model_name"] = np.full(len(chunk), m.name)
                data["model_version"] = np.full(len(chunk), m.version, dtype="int32")
                data["airflow_run_id"] = np.full(len(chunk), run_id)
                data["scored_at"] = np.full(len(chunk), scored_at)
                table = pa.table({c.name: _arrow_column(data[c.name], schema.field(c.name).type, len(chunk))
                                  for c in columns}, schema=schema)
                writer.write_table(table)
                rows_out += len(chunk)
                if m.role == "champion":
                    exact_rows += int(data["reasons_exact"].sum())
                timings["write"] += time.perf_counter() - t0
    side.unlink(missing_ok=True)
    seconds = {k: round(v, 2) for k, v in timings.items()}
    log.info("Scored %d entities with %s: %s s", rows_in, [f"{m.role} v{m.version}" for m in models], seconds)
    return ScoreRun(str(out_file), rows_in, rows_out, seconds, exact_rows, float(exact_cut))


def exact_share_within_budget(m: PinnedModel, features_file: Path, rc, rows: int, timings: dict) -> float:
    """The share of rows that get exact reason codes: the spec's `exact_share`, extended to what the measured cost
    of exact contributions for this model allows within `exact_budget_seconds`."""
    if rc.exact_budget_seconds is None or rc.exact_share >= 1.0 or m.model.kind == "logistic_regression":
        return rc.exact_share
    import pyarrow.parquet as pq

    started = time.perf_counter()
    sample = next(pq.ParquetFile(features_file).iter_batches(batch_size=min(rows, 2_000))).to_pandas()
    X = m.model.transform(sample)
    t0 = time.perf_counter()
    contributions(m.model, X)
    per_row = (time.perf_counter() - t0) / len(sample)
    affordable = rc.exact_budget_seconds / max(per_row, 1e-9)
    share = max(rc.exact_share, min(1.0, affordable / rows))
    timings["reason_codes"] += time.perf_counter() - started
    log.info("Exact reason codes cost %.2f ms per row for %s v%s: %.0f s budget -> exact for %.0f%% of %d rows",
             per_row * 1000, m.name, m.version, rc.exact_budget_seconds, share * 100, rows)
    return share


def _arrow_column(values, type_, n: int):
    import pyarrow as pa

    if values is None:
        return pa.nulls(n, type_)
    return pa.array(values, type_)


def _bands(p: np.ndarray, thresholds: list[tuple[str, float]]) -> np.ndarray:
    out = np.full(len(p), "low", dtype=object)
    for name, cut in reversed(thresholds):  # lowest threshold first, so higher bands overwrite
        out[p >= cut] = name
    return out


def _reason_columns(m: PinnedModel, chunk: pd.DataFrame, p: np.ndarray, exact_cut: float, sc):
    """Reason codes of one chunk: exact for scores above the cut, the spec's fallback for the rest."""
    rc = sc.reason_codes
    n = len(chunk)
    exact = p >= exact_cut
    others = rc.others
    if m.model.kind == "lightgbm" and others == "approximate":
        others = "none"  # LightGBM has no approximate contributions
    if m.model.kind == "logistic_regression" or others == "exact":
        exact[:] = True  # linear contributions are exact and cheap
    X = m.model.transform(chunk)
    contrib = np.full((n, X.shape[1]), np.nan)
    have = exact.copy()
    if exact.any():
        contrib[exact] = contributions(m.model, X[exact])
    if others == "approximate" and (~exact).any():
        contrib[~exact] = contributions(m.model, X[~exact], approximate=True)
        have[:] = True
    features, per = per_feature(m.model, contrib)
    names = np.full((n, min(rc.top, len(features))), None, dtype=object)
    values = names.copy()
    impacts = np.full(names.shape, np.nan)
    if have.any():
        nm, vl, im = top_reasons(features, per[have], chunk.iloc[np.flatnonzero(have)], rc.top)
        names[have], values[have], impacts[have] = nm, vl, im
    impacts = np.where(np.isnan(impacts), None, impacts)
    return names, values, impacts, exact
