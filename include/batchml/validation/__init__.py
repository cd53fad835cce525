"""Great Expectations on raw partitions, feature tables and scores: the gate that stops bad data before it spreads.

  suites    the expectations derived from the spec (plain data, no GX import)
  gx        running them: a file-backed GX project, Data Docs, failures listed with samples
  raw       every raw partition a run reads, validated once per content

This module holds the steps the DAGs call.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from batchml.errors import LandingError
from batchml.results import CheckedFeatures, CheckedScores, LandedRaw, LoadedScores, RawChecked, StagedFeatures
from batchml.settings import Settings
from batchml.specs import AS_OF_COLUMN, UseCaseSpec
from batchml.validation.gx import ValidationReport, raise_for_failures, raise_for_reports, run_sql_suite, run_suite
from batchml.validation.raw import ValidationCache, validate_source
from batchml.validation.suites import (
    Expectation,
    column_expectations,
    feature_suite,
    raw_suite,
    schema_failures,
    score_suite,
)

__all__ = ["Expectation", "ValidationReport", "active_population_size", "column_expectations", "feature_suite",
           "raise_for_failures", "raw_suite", "run_sql_suite", "run_suite", "schema_failures", "score_suite",
           "validate_feature_partition", "validate_raw", "validate_raw_partitions", "validate_scores"]

RAW_WHAT_NEXT = ("Fix or re-land the offending partition (batchml ingest replaces a day whole), then clear this task; "
                 "the feature partition was not rebuilt.")


def validate_raw(spec: UseCaseSpec, raw_root: Path, as_of: dt.date, gx_root: Path, run_label: str,
                 partitions: dict[str, list[dt.date]] | None = None,
                 cache_root: Path | None = None) -> list[ValidationReport]:
    """Validate every raw partition a feature run as of `as_of` reads (`partitions`, by default all of them), each
    once per content when `cache_root` is given; one report per source; raise listing every failure."""
    from batchml.partitions import partitions_read
    from batchml.storage import Landing

    if partitions is None:
        partitions = partitions_read(spec, Landing(str(raw_root)), as_of)
    cache = ValidationCache(cache_root)
    reports = [validate_source(spec, source, raw_root, partitions.get(source, []), gx_root, run_label, cache).report
               for source in spec.sources_read()]
    raise_for_reports(reports, RAW_WHAT_NEXT)
    return reports


def active_population_size(spec: UseCaseSpec, raw_root: Path, as_of: dt.date) -> int:
    """Entities that started before `as_of` and had not left before it, counted independently of Spark."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from batchml.partitions import as_of_timestamp, snapshot_day
    from batchml.storage import Landing, read_partition

    end = as_of_timestamp(as_of)
    key = spec.entity.key
    if spec.is_event:
        return event_population_size(spec, raw_root, as_of)
    if spec.is_snapshot:
        table = read_partition(raw_root, spec.entity.source, snapshot_day(raw_root, spec, as_of), columns=[key])
        return len(pc.unique(table[key]))

    def keys(source: str, ts_col: str) -> set:
        days = Landing(str(raw_root)).landed_days(source, before=as_of)
        if not days:
            return set()
        files = [str(p) for d in days for p in (raw_root / source / f"dt={d.isoformat()}").glob("*.parquet")]
        table = ds.dataset(files, format="parquet").to_table(columns=[key, ts_col], filter=ds.field(ts_col) < end)
        return set(pc.unique(table[key]).to_pylist())

    present = keys(spec.entity.source, spec.entity_source.timestamp)
    if spec.entity.leaves_on:
        present -= keys(spec.entity.leaves_on, spec.sources[spec.entity.leaves_on].timestamp)
    if not present:
        raise LandingError(f"No {spec.entity.source} started before {as_of}: nothing to build features for.")
    return len(present)


def event_population_size(spec: UseCaseSpec, raw_root: Path, as_of: dt.date) -> int:
    """Event entity: the distinct events of the day before `as_of` (timestamps in `[as_of - 1 day, as_of)`, from
    every partition they may have landed in), counted with pyarrow, independently of the Spark job."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from batchml.event_features import job_for_spec
    from batchml.partitions import as_of_timestamp

    job = job_for_spec(spec, raw_root, as_of)
    scored = job.reads()[0]
    ts, end = spec.event_timestamp, as_of_timestamp(as_of)
    files = [str(p) for d in scored.days for p in (raw_root / scored.source / f"dt={d.isoformat()}").glob("*.parquet")]
    if not files:
        return 0
    table = ds.dataset(files, format="parquet").to_table(
        columns=[spec.entity.key], filter=(ds.field(ts) >= end - dt.timedelta(days=1)) & (ds.field(ts) < end))
    return len(pc.unique(table[spec.entity.key]))


# Steps -------------------------------------------------------------------------------------------------------------


def validate_raw_partitions(spec: UseCaseSpec, settings: Settings, landed: LandedRaw, label: str) -> RawChecked:
    """Great Expectations on every raw partition a feature run reads (each once per content); raises listing every
    failure with its source, partition, file, expectation and sample values."""
    reports = validate_raw(spec, Path(landed.raw_root), landed.as_of, settings.gx_root, label,
                           partitions=landed.partitions, cache_root=settings.data_root / "validation_cache")
    docs = next((r.data_docs for r in reversed(reports) if r.data_docs), None)
    return RawChecked.extending(landed, raw_checks={r.suite: r.rows for r in reports}, data_docs=docs)


def validate_feature_partition(spec: UseCaseSpec, settings: Settings, staged: StagedFeatures,
                               label: str) -> CheckedFeatures:
    """Great Expectations on the staged feature table: one row per active entity, no nulls, sane ranges."""
    import pandas as pd

    expected = active_population_size(spec, Path(staged.raw_root), staged.as_of)
    df = pd.read_parquet(staged.staged_file)
    df[AS_OF_COLUMN] = df[AS_OF_COLUMN].astype(str)
    report = run_suite(df, f"{spec.name}.features", feature_suite(spec, staged.as_of, expected), settings.gx_root,
                       label)
    raise_for_failures(report, "The feature partition was not published; the previous one (if any) is intact.")
    return CheckedFeatures.extending(staged, data_docs=report.data_docs, expected_rows=expected)


def validate_scores(spec: UseCaseSpec, settings: Settings, loaded: LoadedScores, label: str) -> CheckedScores:
    """Great Expectations on the staging table, in the warehouse; a failure drops it and lists what failed."""
    from batchml import warehouse as wh
    from batchml.score_table import score_table_columns

    started = time.perf_counter()
    roles = list(loaded.roles)
    columns = [c.name for c in score_table_columns(spec)]
    engine = wh.engine(settings.warehouse_url)
    enforced = engine.dialect.name == "postgresql"
    key_failure = wh.add_primary_key(engine, loaded.staging_table, spec.score_table) if enforced else None
    suite = score_suite(spec.entity.key, columns, loaded.entities * len(roles), roles, list(loaded.roles.values()),
                        list(spec.scoring.bands), loaded.as_of, key_enforced=enforced)
    report = run_sql_suite(engine, loaded.staging_table, f"{spec.name}.scores", suite, settings.gx_root, label)
    if key_failure is not None:
        report.failures.append(key_failure)
        report.evaluated += 1
        report.success = False
    if not report.success:
        wh.drop_table(engine, loaded.staging_table)
    raise_for_failures(report, f"Scores for {loaded.as_of} were not published; the previous rows are intact.")
    seconds = {**loaded.seconds, "validate": round(time.perf_counter() - started, 2)}
    return CheckedScores.extending(loaded, seconds=seconds, data_docs=report.data_docs)
