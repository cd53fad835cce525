"""Point-in-time-correct feature tables with PySpark.

The feature row of an entity as of day D (midnight UTC, the start of D) uses only data with a timestamp strictly
before D: entities that started before D and had not left before D, and events in `[D - window, D)`. Nothing at or
after D can change D's features (tests/integration/test_features.py shifts events to prove it).

Aggregation plan (read `explain()` before changing it; benchmarks/feature_job.py measures it and docs/benchmarks.md
has the figures): one scan of the events and one aggregation per entity that computes every window at once with
conditional aggregates; Spark aggregates partially in each scan task, and a task reads up to half the window on 2
cores (batchml.spark.DEFAULT_CONFS: files counted near their size), so about one row per entity and task is shuffled. A distinct
count of a column with few values (up to MAX_MASK_VALUES, read from the Parquet dictionaries first) is the number of
bits set in the OR of one bit per value over the window, so it needs neither one `countDistinct` per window (the
costly part of the naive plan) nor a first aggregation per (entity, value), whose partial aggregation reduces
nothing and which costs a second shuffle. A column with more values falls back to "last time each (entity, value)
was seen". Reads list their day folders on the driver and skip Parquet dictionary filtering (see RUNTIME_CONFS and
PARQUET_READ_OPTIONS).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchml.errors import LandingError, SpecError
from batchml.partitions import as_of_timestamp, snapshot_day, window_days
from batchml.results import CheckedFeatures, PublishedFeatures, RawChecked, StagedFeatures
from batchml.settings import Settings
from batchml.sparkconf import PARQUET_READ_OPTIONS, RUNTIME_CONFS, SPARK_TYPES
from batchml.specs import AS_OF_COLUMN, AggregateSpec, UseCaseSpec
from batchml.specs.data import MISSING_SUFFIX
from batchml.storage import Landing, partition_name, string_values

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

@dataclass
class FeatureContext:
    """What a custom feature function receives: point-in-time reads of the sources, nothing after `as_of`."""

    spark: SparkSession
    spec: UseCaseSpec
    raw_root: Path
    as_of: dt.date
    population: DataFrame
    _cache: dict = field(default_factory=dict)

    @property
    def as_of_ts(self) -> dt.datetime:
        return as_of_timestamp(self.as_of)

    def events(self, source: str, days: int) -> DataFrame:
        """Events of `source` in `[as_of - days, as_of)`."""
        return read_events(self.spark, self.spec, self.raw_root, source, self.as_of, days)


def _schema_ddl(spec: UseCaseSpec, source: str) -> str:
    cols = spec.sources[source].columns
    return ", ".join(f"`{name}` {SPARK_TYPES[c.type]}" for name, c in cols.items())


def _partition_dirs(raw_root: Path, source: str, days: list[dt.date]) -> list[str]:
    return [str(raw_root / source / partition_name(d)) for d in days]


def _read(spark: SparkSession, spec: UseCaseSpec, raw_root: Path, source: str, days: list[dt.date]) -> DataFrame:
    paths = _partition_dirs(raw_root, source, days)
    missing = [p for p in paths if not Path(p).is_dir()]
    if missing:
        raise LandingError(
            f"{len(missing)} partition(s) of {source!r} needed by the feature job have not landed, e.g. {missing[0]}. "
            "Land them (or backfill the ingestion), then clear the task."
        )
    if not paths:
        return spark.createDataFrame([], _schema_ddl(spec, source))
    return spark.read.schema(_schema_ddl(spec, source)).options(**PARQUET_READ_OPTIONS).parquet(*paths)


def read_events(
    spark: SparkSession, spec: UseCaseSpec, raw_root: Path, source: str, as_of: dt.date, days: int
) -> DataFrame:
    """Events of `source` with timestamps in `[as_of - days, as_of)`, read only from the partitions needed."""
    from pyspark.sql import functions as F

    ts_col = spec.sources[source].timestamp
    end = as_of_timestamp(as_of)
    start = end - dt.timedelta(days=days)
    df = _read(spark, spec, raw_root, source, window_days(as_of, days))
    # timestamps, not partition dates, decide: a late-landed event in an old partition still counts correctly
    return df.where((F.col(ts_col) >= F.lit(start)) & (F.col(ts_col) < F.lit(end)))


def population(spark: SparkSession, spec: UseCaseSpec, raw_root: Path, as_of: dt.date) -> DataFrame:
    """Entities that started before `as_of` and had not left (e.g. churned) before it; for a snapshot source, the
    rows of its newest partition landed before `as_of`."""
    from pyspark.sql import functions as F

    ent = spec.entity_source
    key = spec.entity.key
    end = as_of_timestamp(as_of)
    if spec.is_snapshot:
        return _read(spark, spec, raw_root, spec.entity.source, [snapshot_day(raw_root, spec, as_of)])
    landing = Landing(str(raw_root))
    entities = _read(spark, spec, raw_root, spec.entity.source, landing.landed_days(spec.entity.source, before=as_of))
    entities = entities.where(F.col(ent.timestamp) < F.lit(end))
    if spec.entity.leaves_on:
        leave_src = spec.entity.leaves_on
        leave_ts = spec.sources[leave_src].timestamp
        left = _read(spark, spec, raw_root, leave_src, landing.landed_days(leave_src, before=as_of))
        left = left.where(F.col(leave_ts) < F.lit(end)).select(key).distinct()
        entities = entities.join(left, on=key, how="left_anti")
    return entities


# Distinct counts of a column with at most this many values are bit masks (one bit per value, bit 0 for null).
MAX_MASK_VALUES = 63


def _value_bits(events: DataFrame, column: str, partitions: list[str] | None = None):
    """A bigint with one bit set per value of `column`, or None when it has more than MAX_MASK_VALUES values.

    The values come from the Parquet dictionaries of `partitions` (the files `events` were read from) when the
    column holds strings: a superset, as the files also hold events outside the time window, which is harmless (a
    bit no event sets is never counted). Otherwise a small Spark job lists the distinct values of the events read
    (at most 65 come back).
    """
    from pyspark.sql import functions as F

    known = string_values(partitions, column, MAX_MASK_VALUES) if partitions else None
    if known is None:
        values = [r[0] for r in events.select(column).distinct().limit(MAX_MASK_VALUES + 2).collect()]
        known = sorted(v for v in values if v is not None)
    if len(known) > MAX_MASK_VALUES:
        return None
    # 1-based position in the list; a null value -> bit 0, so null counts as one value (as a group by it would)
    position = F.lit(0)
    if known:
        position = F.coalesce(F.array_position(F.array(*[F.lit(v) for v in known]), F.col(column)), position)
    return F.call_function("shiftleft", F.lit(1).cast("bigint"), position.cast("int"))


def _aggregate(events: DataFrame, agg: AggregateSpec, key: str, ts_col: str, as_of: dt.date,
               partitions: list[str] | None = None) -> DataFrame:
    """All windows of one aggregate block in one aggregation per entity (see the module docstring); `partitions`:
    the folders `events` were read from."""
    from pyspark.sql import functions as F

    end = as_of_timestamp(as_of)
    p = agg.prefix
    in_w = {w: F.col(ts_col) >= F.lit(end - dt.timedelta(days=w)) for w in agg.windows}
    # a plain count needs no window test for the longest window: the read already bounds it
    longest = max(agg.windows)
    in_w[longest] = F.lit(True)
    need_n = agg.count or agg.mean or agg.share or agg.trend
    bits = {c: b for c in agg.distinct if (b := _value_bits(events, c, partitions)) is not None}
    # each value's bit once per event, in a projection below the aggregation: written into the aggregate, Spark
    # evaluated its array search twice per window and event (bit_or tests its input for null, then ORs it)
    events = events.select("*", *[b.alias(f"_bit_{c}") for c, b in bits.items()])
    bits = {c: F.col(f"_bit_{c}") for c in bits}

    aggs: list = [F.max(ts_col).alias("_last")]
    for w in agg.windows:
        if need_n:
            aggs.append(F.sum(F.when(in_w[w], 1).otherwise(0)).alias(f"_n{w}"))
        for c in sorted(set(agg.sum) | set(agg.mean)):
            aggs.append(F.sum(F.when(in_w[w], F.col(c))).alias(f"_s_{c}_{w}"))
        for c in agg.max:
            aggs.append(F.max(F.when(in_w[w], F.col(c))).alias(f"_m_{c}_{w}"))
        for c, values in agg.share.items():
            for v in values:
                aggs.append(F.sum(F.when(in_w[w] & (F.col(c) == v), 1).otherwise(0)).alias(f"_v_{c}_{v}_{w}"))
        for c, b in bits.items():
            # the values seen in window w: OR of their bits; the distinct count is the number of bits set
            aggs.append(F.bit_count(F.bit_or(F.when(in_w[w], b))).alias(f"_d_{c}_{w}"))
    stats = events.groupBy(key).agg(*aggs)

    # columns with too many values for a mask: (entity, value) -> last time seen, then count per window
    for c in (c for c in agg.distinct if c not in bits):
        last = events.groupBy(key, c).agg(F.max(ts_col).alias("_t"))
        counts = last.groupBy(key).agg(
            *[F.sum(F.when(F.col("_t") >= F.lit(end - dt.timedelta(days=w)), 1).otherwise(0)).alias(f"_d_{c}_{w}")
              for w in agg.windows]
        )
        stats = stats.join(counts, on=key, how="left")

    out = [F.col(key)]
    for w in agg.windows:
        n = F.coalesce(F.col(f"_n{w}"), F.lit(0)) if need_n else None
        if agg.count:
            out.append(n.cast("bigint").alias(f"{p}_count_{w}d"))
        for c in agg.sum:
            out.append(F.coalesce(F.col(f"_s_{c}_{w}"), F.lit(0.0)).cast("double").alias(f"{p}_sum_{c}_{w}d"))
        for c in agg.mean:
            mean = F.when(n > 0, F.col(f"_s_{c}_{w}") / n).otherwise(F.lit(0.0))
            out.append(mean.cast("double").alias(f"{p}_mean_{c}_{w}d"))
        for c in agg.max:
            out.append(F.coalesce(F.col(f"_m_{c}_{w}"), F.lit(0.0)).cast("double").alias(f"{p}_max_{c}_{w}d"))
        for c in agg.distinct:
            out.append(F.coalesce(F.col(f"_d_{c}_{w}"), F.lit(0)).cast("bigint").alias(f"{p}_distinct_{c}_{w}d"))
        for c, values in agg.share.items():
            for v in values:
                share = F.when(n > 0, F.col(f"_v_{c}_{v}_{w}") / n).otherwise(F.lit(0.0))
                out.append(share.cast("double").alias(f"{p}_share_{c}_{v}_{w}d"))
    if agg.recency:
        days = (F.lit(end).cast("double") - F.col("_last").cast("double")) / 86400.0
        out.append(F.coalesce(days, F.lit(float(longest + 1))).cast("double").alias(f"{p}_days_since_last"))
    if agg.trend:
        s, lg = agg.trend.short, agg.trend.long
        n_s, n_l = F.coalesce(F.col(f"_n{s}"), F.lit(0)), F.coalesce(F.col(f"_n{lg}"), F.lit(0))
        ratio = F.when(n_l > 0, (n_s / F.lit(float(s))) / (n_l / F.lit(float(lg)))).otherwise(F.lit(0.0))
        out.append(ratio.cast("double").alias(f"{p}_trend_{s}d_{lg}d"))
    return stats.select(*out)


def _defaults_for(agg: AggregateSpec) -> dict[str, float | int]:
    """Values of entities with no event at all in the longest window (left join leaves them null)."""
    out: dict[str, float | int] = {}
    for name, kind in agg.feature_names().items():
        out[name] = float(max(agg.windows) + 1) if name.endswith("_days_since_last") else (0 if kind == "count" else 0.0)
    return out


def load_custom(spec: UseCaseSpec) -> Callable[[FeatureContext], DataFrame] | None:
    """The spec's custom feature function, imported by `module:function`."""
    if not spec.features.custom:
        return None
    target = spec.features.custom.function
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, func_name)
    except (ImportError, AttributeError) as exc:
        where = f"{spec.path}: features.custom.function" if spec.path else "features.custom.function"
        raise SpecError(f"{where}: cannot import {target!r} ({exc})") from None


def build_features(spark: SparkSession, spec: UseCaseSpec, raw_root: Path, as_of: dt.date) -> DataFrame:
    """The feature table of `spec` as of `as_of` (lazy DataFrame): one row per entity in the population, or, for an
    event entity, one row per event of the day before `as_of` (batchml.event_features).

    Only the values of distinct-count columns are read now (see _value_bits).
    """
    from pyspark.sql import functions as F

    if spec.is_event:
        from batchml.event_features import job_for_spec

        return job_for_spec(spec, raw_root, as_of).build(spark)
    for key, value in RUNTIME_CONFS.items():
        spark.conf.set(key, value)
    key = spec.entity.key
    ent = spec.entity_source
    pop = population(spark, spec, raw_root, as_of)
    end = as_of_timestamp(as_of)
    base = [F.col(key), F.lit(as_of).cast("date").alias(AS_OF_COLUMN)]
    fills = spec.features.fill
    base += [F.coalesce(F.col(c), F.lit(fills[c])).alias(c) if c in fills else F.col(c) for c in spec.features.static]
    # numeric features are doubles whatever their raw type, so the model's input schema does not depend on the data
    base += [F.coalesce(F.col(c).cast("double"), F.lit(float(fills[c]))).alias(c) if c in fills
             else F.col(c).cast("double").alias(c) for c in spec.features.numeric]
    # 1 where a filled column's value was missing (features.missing_indicators), so the fill is not mistaken for an
    # observed value
    base += [F.col(name.removesuffix(MISSING_SUFFIX)).isNull().cast("bigint").alias(name)
             for name in spec.features.indicator_columns()]
    if spec.features.tenure:
        tenure = (F.lit(end).cast("double") - F.col(ent.timestamp).cast("double")) / 86400.0
        base.append(F.floor(tenure).cast("bigint").alias("tenure_days"))
    table = pop.select(*base)

    fill: dict[str, float | int] = {}
    for agg in spec.features.aggregates:
        ts_col = spec.sources[agg.source].timestamp
        cols = [key, ts_col, *agg.sum, *agg.mean, *agg.max, *agg.distinct, *agg.share]
        events = read_events(spark, spec, raw_root, agg.source, as_of, max(agg.windows)).select(*dict.fromkeys(cols))
        partitions = _partition_dirs(raw_root, agg.source, window_days(as_of, max(agg.windows)))
        table = table.join(_aggregate(events, agg, key, ts_col, as_of, partitions), on=key, how="left")
        fill.update(_defaults_for(agg))
    table = table.fillna(fill)

    custom = load_custom(spec)
    if custom is not None:
        extra = custom(FeatureContext(spark, spec, raw_root, as_of, pop))
        declared = [key, *spec.features.custom.columns]
        if sorted(extra.columns) != sorted(declared):
            raise SpecError(
                f"features.custom.function {spec.features.custom.function!r} returned columns {extra.columns}; "
                f"the spec declares {declared} (entity key plus features.custom.columns)"
            )
        table = table.join(extra.select(*declared), on=key, how="left")
    return table


@dataclass
class FeatureJobResult:
    staged_file: str
    rows: int
    columns: list[str]
    seconds: float


def run_feature_job(
    spark: SparkSession, spec: UseCaseSpec, raw_root: Path, as_of: dt.date, staging_dir: Path
) -> FeatureJobResult:
    """Build the feature table as of `as_of` and write it as one Parquet file into `staging_dir` (not published)."""
    import pyarrow.parquet as pq

    from batchml.storage import single_parquet_file

    started = time.perf_counter()
    table = build_features(spark, spec, raw_root, as_of)
    # one file per partition, so that publishing is a single atomic rename; repartition (not coalesce) keeps the
    # aggregation itself parallel
    table.repartition(1).sortWithinPartitions(spec.entity.key).write.mode("overwrite").parquet(str(staging_dir))
    staged = single_parquet_file(staging_dir)
    meta = pq.read_metadata(staged)
    result = FeatureJobResult(str(staged), meta.num_rows, meta.schema.to_arrow_schema().names,
                              time.perf_counter() - started)
    log.info("Feature job %s as of %s: %d rows x %d columns in %.1f s -> %s", spec.name, as_of, result.rows,
             len(result.columns), result.seconds, staged)
    return result


# Steps of the feature DAG (and of the training DAG, for missing snapshots) -----------------------------------------


def staging_dir(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    """Where runs for `as_of` write before publishing (one subfolder per run)."""
    return settings.staging_root / "features" / spec.name / partition_name(as_of)


def build_feature_partition(spark: SparkSession, spec: UseCaseSpec, settings: Settings, checked: RawChecked,
                            label: str) -> StagedFeatures:
    """Run the Spark feature job into a staging folder (nothing is published here)."""
    job = run_feature_job(spark, spec, Path(checked.raw_root), checked.as_of,
                          staging_dir(spec, settings, checked.as_of) / label)
    return StagedFeatures.extending(checked, staged_file=job.staged_file, rows=job.rows,
                          job_seconds=round(job.seconds, 1))


def publish_feature_partition(spec: UseCaseSpec, settings: Settings, checked: CheckedFeatures,
                              run_id: str) -> PublishedFeatures:
    """Move the validated file into `features/<name>/dt=D/` in one rename; returns the published partition."""
    from batchml.storage import feature_partition_dir, publish_file, remove_tree

    target_dir = feature_partition_dir(settings.features_root, spec.name, checked.as_of)
    manifest = {
        "use_case": spec.name,
        "as_of": checked.as_of.isoformat(),
        "rows": checked.rows,
        "run_id": run_id,
        "spec_sha256": spec.sha256,
        "data_docs": checked.data_docs,
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path = publish_file(Path(checked.staged_file), target_dir, manifest)
    remove_tree(staging_dir(spec, settings, checked.as_of))  # this run's and earlier failed runs' staging folders
    log.info("Published %s (%d rows)", path, checked.rows)
    return PublishedFeatures(as_of=checked.as_of, path=str(path), rows=checked.rows, data_docs=checked.data_docs)
