"""Batch scoring: pinned model versions, chunked prediction in bounded memory, risk deciles and bands, reason codes.

Two streaming passes over the day's feature partition (`chunk_rows` rows at a time), so peak memory depends on the
chunk size, not on the partition's size:
  1. probabilities of the champion (and the challenger), accumulated into a fixed 100,000-bin histogram: the day's
     decile cut-offs and the cut-off of the top `exact_share` come from it;
  2. deciles, bands and reason codes, written as Arrow batches into one staged Parquet file.

Reason codes are SHAP contributions of the model's own trees (`BatchModel.contributions`: exact TreeSHAP from
per-leaf tables, `batchml.treeshap`), not an explainer loop: exact for the highest-risk share analysts act on
(extended to every row the spec's time budget allows), Saabas approximations (XGBoost) or none for the rest. A
linear baseline's are exact and cheap.
`reason_codes` turns them into the columns analysts read (the features raising the score, in words). Only the
champion's rows get codes: challenger rows are shadow scores, compared in aggregate, never acted on row by row, and
explaining them would double the most expensive part of scoring.
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
from batchml.models import BatchModel
from batchml.reason_codes import FeatureWords, feature_words, reason_columns
from batchml.results import PinnedVersions, StagedScores
from batchml.score_table import arrow_schema, score_table_columns, staging_dir
from batchml.settings import Settings
from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)

BINS = 100_000


class ScoringError(BatchMLError):
    """The day's features cannot be scored (missing or empty partition, columns that do not fit the model, ...)."""


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
        """The score above which about `share` of the rows lie (infinity when share is 0: no row is above it)."""
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
    about = feature_words(spec)
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
                reasons, exact = (_reason_codes(m, chunk, p, exact_cut, sc, about) if m.role == "champion"
                                  else ({}, np.zeros(len(chunk), dtype=bool)))
                timings["reason_codes"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                data = {
                    key: chunk[key].astype(str).to_numpy(),
                    "as_of_date": np.full(len(chunk), as_of),
                    "model_role": np.full(len(chunk), m.role),
                    "score": p,
                    "risk_decile": (1 + np.sum(p[:, None] < edges[m.role][None, :], axis=1)).astype("int16"),
                    "risk_band": _bands(p, thresholds),
                    **reasons,
                }
                for col in sc.columns:
                    data[col] = chunk[col].to_numpy()
                data["reasons_exact"] = exact
                data["model_name"] = np.full(len(chunk), m.name)
                data["model_version"] = np.full(len(chunk), m.version, dtype="int32")
                data["airflow_run_id"] = np.full(len(chunk), run_id)
                data["scored_at"] = np.full(len(chunk), scored_at)
                table = pa.table({c.name: _arrow_column(data.get(c.name), schema.field(c.name).type, len(chunk))
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
    # the first call builds the model's TreeSHAP tables and loads (once per install: compiles, ~3 s) the kernels:
    # one-off costs, not per-row ones
    m.model.contributions(X.iloc[:8])
    t0 = time.perf_counter()
    m.model.contributions(X)
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


def _reason_codes(m: PinnedModel, chunk: pd.DataFrame, p: np.ndarray, exact_cut: float, sc,
                  about: dict[str, FeatureWords]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Reason columns of one chunk (exact for scores above the cut, the spec's fallback for the rest) and which
    rows have exact codes."""
    rc = sc.reason_codes
    n = len(chunk)
    exact = p >= exact_cut
    others = rc.others
    if m.model.kind == "lightgbm" and others == "approximate":
        others = "none"  # LightGBM has no approximate contributions (exact ones from the tables are cheap)
    if m.model.kind == "logistic_regression" or others == "exact":
        exact[:] = True  # linear contributions are exact and cheap
    X = m.model.transform(chunk)
    contrib = np.full((n, X.shape[1]), np.nan)
    if exact.any():
        contrib[exact] = m.model.contributions(X[exact])
    if others == "approximate" and (~exact).any():
        contrib[~exact] = m.model.contributions(X[~exact], approximate=True)
    features, per = m.model.per_feature(contrib)
    return reason_columns(features, per, chunk, rc.top, about), exact


# Steps of the scoring DAG ------------------------------------------------------------------------------------------


def pin_models(spec: UseCaseSpec, settings: Settings) -> PinnedVersions:
    """Resolve the champion (required) and the challenger (optional) aliases to version numbers, once."""
    from batchml import registry

    client = registry.connect(settings)
    champion = registry.resolve_champion(client, spec.model_name)
    challenger = registry.alias_version(client, spec.model_name, registry.CHALLENGER)
    if challenger == champion or not spec.scoring.shadow_challenger:
        challenger = None
    log.info("Pinned %s: champion v%s, challenger %s", spec.model_name, champion,
             f"v{challenger}" if challenger else "none")
    return PinnedVersions(model_name=spec.model_name, champion=champion, challenger=challenger)


def score_features(spec: UseCaseSpec, settings: Settings, as_of: dt.date, pinned: PinnedVersions, run_id: str,
                   label: str) -> StagedScores:
    """Score D's feature partition with the pinned versions into a staged Parquet file."""
    from batchml import registry
    from batchml.storage import feature_partition_file

    registry.connect(settings)
    started = time.perf_counter()
    models = [PinnedModel(role, pinned.model_name, version,
                          registry.load_batch_model(f"models:/{pinned.model_name}/{version}"))
              for role, version in pinned.roles.items()]
    load_seconds = time.perf_counter() - started
    folder = staging_dir(spec, settings, as_of) / label
    folder.mkdir(parents=True, exist_ok=True)
    run = score_partition(spec, feature_partition_file(settings.features_root, spec.name, as_of), models,
                          folder / "scores.parquet", as_of, run_id)
    return StagedScores.extending(pinned, as_of=as_of, staged_file=run.staged_file, entities=run.rows_in,
                        rows=run.rows_out, exact_reason_rows=run.exact_rows,
                        seconds={"load_models": round(load_seconds, 2), **run.seconds})
