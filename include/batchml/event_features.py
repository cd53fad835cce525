"""Point-in-time features of an event entity with PySpark (issue 17): one row per event of the day being scored, each
as of its own timestamp, from strictly earlier events of the same source (specs/events.py defines every feature).

A run for `as_of` scores the events of day D = as_of - 1 (`D 00:00 <= t < as_of 00:00` UTC) and reads nothing at or
after `as_of`. For an event at `t`, a history block of group `g` (a card, a merchant) uses only rows with `t' < t`:
an event with the same timestamp is never earlier, whichever row comes first, so tied events do not see each other.

How a range window `[t - w, t)` is computed for a million events without a sliding frame per event: Spark's sliding
range frame recomputes its aggregate whenever its lower bound moves, which costs (events x frame size) on a busy
merchant. Prefix sums do not: with rows of group g ordered by time, `count[t - w, t) = P(t) - P(t - w)` where
`P(s)` is the number of rows before `s`, and a frame from the start of the partition to an offset (`rangeBetween(
unboundedPreceding, -w - 1 us)`) is evaluated in one pass over the sorted partition, whatever its offset. Every
feature of a block is such a prefix aggregate (sum, max, bit OR) over one sort of one union of rows per group:

  the scored day's events         they are the rows featured, and the history of the later events of their day;
  event-level rows before the day only the instants a window's lower bound can fall in: `[D - w, D - 24h * (q - 1))`
                                   for a window of w = 24q + r hours (the day D-1 for 1 h and 24 h, D-7 for 168 h);
  one summary row per group       at `D - 1 us` (before every scored event, after all history), carrying sums
                                   over whole days, computed by one aggregation: the whole days strictly inside a
                                   window (D-6..D-1 for 168 h), the `usual` days, the lookback's last event time and
                                   value bits (first_seen of a column with few values), the label rate's counts;
and first_seen of a column with many values (a card's merchants), where a bit per value cannot work, is a join
instead: the scored rows with the distinct (group, value) pairs of the lookback's whole days and with each pair's
first time on the scored day (sorting millions of pairs with the block's rows cost more than all the rest).

Each weight column counts only in its own ranges (an event-level row of D-1 counts for the 24 h window and not for
the 168 h one, whose D-1 is in the summary), so every window is exact to the microsecond while most history is read
as day-granular sums. Per block this is one aggregation, one exchange of the union by group and one sort (and a
join per many-valued first_seen column); the scored rows carry their features from block to block, so no join by
event key is needed. `EventFeatureJob.reads()` lists what a run reads (logged at the start of each run);
benchmarks/fraud_day.py measures it at a million events a day.

The feature DAG reaches this module through batchml.features.build_features when the spec's entity is an event
(`entity.kind: event`): the same steps (raw checks, this job, feature checks, publish) as a population's.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchml.errors import LandingError, SpecError
from batchml.specs import AS_OF_COLUMN
from batchml.specs.events import HOUR_OF_DAY, EventFeaturesSpec, EventOutcomeLabelSpec, HistorySpec
from batchml.storage import partition_name

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from batchml.specs import UseCaseSpec

log = logging.getLogger(__name__)

US = dt.timedelta(microseconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
US_PER_HOUR = 3_600_000_000
MAX_MASK_VALUES = 62
"""first_seen of a column with at most this many values on the scored day uses one bit per value (bit 63: null);
a column with more values falls back to one history row per (group, value)."""
# Confs this job sets on the session it is given (runtime SQL confs), besides batchml.features.RUNTIME_CONFS.
EVENT_JOB_CONFS = {
    # a busy merchant's partition of the union holds tens of thousands of rows; above this many the window operator
    # switches from an in-memory array to a spillable sorter, which is several times slower per row
    "spark.sql.windowExec.buffer.in.memory.threshold": "1000000",
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def as_of_timestamp(day: dt.date) -> dt.datetime:
    """Midnight UTC at the start of `day` (batchml.partitions.as_of_timestamp; not imported: partitions plans its
    reads with this module)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _us(t: dt.datetime) -> int:
    """Microseconds since the epoch (exact, no float rounding)."""
    return (t - _EPOCH) // US


@dataclass(frozen=True)
class EventSource:
    """A raw events source as the job needs it: its name in the landing zone, its timestamp column, how late its
    events may land (SourceSpec.lateness_hours) and, optionally, the Spark DDL of its declared columns (None: the
    files' own schema)."""

    name: str
    timestamp: str
    lateness_hours: float = 0.0
    schema: str | None = None

    @classmethod
    def of(cls, spec: UseCaseSpec, name: str) -> EventSource:
        """Source `name` of a spec, read with its declared schema."""
        from batchml.sparkconf import SPARK_TYPES

        src = spec.sources[name]
        ddl = ", ".join(f"`{c}` {SPARK_TYPES[col.type]}" for c, col in src.columns.items())
        return cls(name, src.timestamp, src.lateness_hours, ddl)


@dataclass(frozen=True)
class Span:
    """The instants `[start, end)`."""

    start: dt.datetime
    end: dt.datetime

    @property
    def start_us(self) -> int:
        return _us(self.start)

    @property
    def end_us(self) -> int:
        return _us(self.end)

    def days(self) -> list[dt.date]:
        """The days this span touches, oldest first."""
        first, last = self.start.date(), (self.end - US).date()
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)] if self.end > self.start else []

    def holds(self, us_col: Column) -> Column:
        from pyspark.sql import functions as F

        return (us_col >= F.lit(self.start_us)) & (us_col < F.lit(self.end_us))


@dataclass(frozen=True)
class WindowPlan:
    """How window `[t - hours, t)` of every event of the day is split: `event` holds every instant `t - hours` can
    be (read row by row), `whole` the whole days always inside the window (read as day-granular sums)."""

    hours: int
    event: Span
    whole: Span | None


def window_plan(hours: int, day_start: dt.datetime) -> WindowPlan:
    """For w = 24q + r hours and t in `[D, D + 24h)`, `t - w` lies in `[D - w, D - w + 24h)`; the whole days
    `[D - 24h * (q - 1), D)` lie inside every event's window (none when q <= 1)."""
    whole_days = max(hours // 24 - 1, 0)
    split = day_start - whole_days * DAY
    return WindowPlan(hours, Span(day_start - hours * HOUR, split), Span(split, day_start) if whole_days else None)


@dataclass(frozen=True)
class BlockPlan:
    """The ranges one history block reads for the day starting at `day_start` (see specs/events.py)."""

    block: HistorySpec
    windows: list[WindowPlan]
    lookback: Span | None
    """Whole days searched by first_seen and since_previous (with the day's earlier events)."""
    usual: Span | None
    label_events: Span | None
    """Events whose labels had matured before the day began (label rate denominators)."""
    label_outcomes: Span | None
    """Outcome rows (their own time) that can make those events positive."""

    @property
    def event_spans(self) -> list[Span]:
        return _merge([w.event for w in self.windows])

    @property
    def whole_spans(self) -> list[Span]:
        spans = [w.whole for w in self.windows if w.whole is not None]
        spans += [s for s in (self.usual, self.label_events) if s is not None]
        if self.lookback is not None and (self.block.since_previous or self.block.first_seen):
            spans.append(self.lookback)
        return _merge(spans)


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: s.start):
        if out and s.start <= out[-1].end:
            out[-1] = Span(out[-1].start, max(out[-1].end, s.end))
        else:
            out.append(s)
    return out


def block_plan(block: HistorySpec, day_start: dt.datetime, label: EventOutcomeLabelSpec | None) -> BlockPlan:
    lookback = Span(day_start - block.lookback_days * DAY, day_start)
    usual = Span(day_start - block.usual.days * DAY, day_start) if block.usual else None
    events = outcomes = None
    if block.label_rate is not None:
        if label is None:
            raise SpecError(f"history block {block.prefix!r}: label_rate needs an event_outcome label")
        horizon = label.horizon_days * DAY
        events = Span(day_start - horizon - block.label_rate.days * DAY, day_start - horizon)
        outcomes = Span(events.start, day_start)  # an outcome counts before event time + horizon < day_start
    return BlockPlan(block, [window_plan(w, day_start) for w in block.hours], lookback, usual, events, outcomes)


@dataclass(frozen=True)
class Read:
    """One read of the job: which partitions of which source, which columns, for what."""

    source: str
    days: list[dt.date]
    columns: list[str]
    purpose: str


@dataclass
class EventFeatureJob:
    """Everything the job needs besides Spark, with its read plan (pure Python: `reads()` needs no session)."""

    raw_root: Path
    as_of: dt.date
    events: EventSource
    key: str
    features: EventFeaturesSpec
    label: EventOutcomeLabelSpec | None = None
    outcomes: EventSource | None = None
    plans: list[BlockPlan] = field(init=False)

    def __post_init__(self):
        self.day_start = as_of_timestamp(self.as_of) - DAY
        self.day = Span(self.day_start, self.day_start + DAY)
        needs_label = any(b.label_rate for b in self.features.history)
        if needs_label and (self.label is None or self.outcomes is None):
            raise SpecError("a history block has label_rate: give the event_outcome label and its source")
        self.plans = [block_plan(b, self.day_start, self.label) for b in self.features.history]

    # Reads ---------------------------------------------------------------------------------------------------------
    def partition_days(self, spans: list[Span], source: EventSource) -> list[dt.date]:
        """Partitions holding the events of `spans`: their days, plus the days late events may have landed in, but
        never the as-of day or later (not landed when the run starts; the run must not depend on it)."""
        late = int(-(-source.lateness_hours // 24))
        last = self.as_of - DAY
        days = {d + dt.timedelta(days=i) for s in spans for d in s.days() for i in range(late + 1)}
        return sorted(d for d in days if d <= last)

    def scored_columns(self) -> list[str]:
        f = self.features
        cols = [self.key, self.events.timestamp, *f.static, *f.numeric]
        for b in f.history:
            cols += [b.group_by, *b.sum, *b.first_seen, *([b.usual.column] if b.usual else [])]
        return list(dict.fromkeys(cols))

    def reads(self) -> list[Read]:
        """Every read of a run, in the order the plan performs them (days per source: `partitions_needed`)."""
        ev, out = self.events, []
        out.append(Read(ev.name, self.partition_days([self.day], ev), self.scored_columns(), "the scored day"))
        for p in self.plans:
            b = p.block
            if p.event_spans:
                out.append(Read(ev.name, self.partition_days(p.event_spans, ev),
                                _cols(b.group_by, ev.timestamp, *b.sum, *b.first_seen),
                                f"{b.prefix}: event-level rows of the windows' boundary days"))
            if p.whole_spans:
                out.append(Read(ev.name, self.partition_days(p.whole_spans, ev), self._summary_columns(p),
                                f"{b.prefix}: day-granular sums per {b.group_by}"))
            for c in b.first_seen:
                out.append(Read(ev.name, self.partition_days([p.lookback], ev), _cols(b.group_by, c, ev.timestamp),
                                f"{b.prefix}: ({b.group_by}, {c}) pairs of the lookback (only if {c} has over "
                                f"{MAX_MASK_VALUES} values on the day)"))
            if p.label_outcomes is not None:
                lb = self.label
                out.append(Read(self.outcomes.name, self.partition_days([p.label_outcomes], self.outcomes),
                                _cols(lb.key, lb.event_timestamp, self.outcomes.timestamp, b.group_by, *lb.where),
                                f"{b.prefix}: matured outcome rows"))
        return out

    def partitions_needed(self) -> dict[str, list[dt.date]]:
        """Every partition a run reads, per source (what must have landed before it can start)."""
        out: dict[str, set[dt.date]] = {}
        for r in self.reads():
            out.setdefault(r.source, set()).update(r.days)
        return {s: sorted(d) for s, d in out.items()}

    def _summary_columns(self, p: BlockPlan) -> list[str]:
        b, ts = p.block, self.events.timestamp
        sums = b.sum if any(w.whole for w in p.windows) else []
        return _cols(b.group_by, ts, *sums, *([b.usual.column] if b.usual else []), *b.first_seen)

    # Spark ---------------------------------------------------------------------------------------------------------
    def build(self, spark: SparkSession) -> DataFrame:
        from pyspark.sql import functions as F

        from batchml.sparkconf import RUNTIME_CONFS

        for k, v in {**RUNTIME_CONFS, **EVENT_JOB_CONFS}.items():
            spark.conf.set(k, v)
        ev, f = self.events, self.features
        reads = self.reads()
        log.info("Event features %s as of %s (events of %s): %s", ev.name, self.as_of, self.day_start.date(),
                 "; ".join(f"{r.purpose}: {r.source} {_day_list(r.days)}" for r in reads))
        rows = read_events(spark, self.raw_root, ev, reads[0].days, self.scored_columns(), [self.day])
        first_seen = list(dict.fromkeys(c for b in f.history for c in b.first_seen))
        values = self._values(rows, first_seen)
        for plan in self.plans:
            rows = self._block(spark, rows, plan, values)
        out = [F.col(self.key), F.lit(self.as_of).cast("date").alias(AS_OF_COLUMN), F.col(ev.timestamp)]
        out += [F.col(c) for c in f.static]
        out += [F.col(c).cast("double").alias(c) for c in f.numeric]
        for b in f.history:
            out += [F.col(name) for name in b.feature_names()]
        if f.time_of_day:
            hour = (F.col("__t") - F.lit(_us(self.day_start))) / F.lit(float(US_PER_HOUR))
            out.append(hour.cast("double").alias(HOUR_OF_DAY))
        return rows.select(*out)

    def _values(self, rows: DataFrame, columns: list[str]) -> dict[str, list]:
        """The values of each first_seen column among the scored events, for the columns with at most
        MAX_MASK_VALUES of them (a bit each). A history value not among them can never match a scored event's
        value: it needs no bit. Two small jobs whatever the number of columns: approximate distinct counts, then
        the exact values of the columns that may be small enough (the exact count decides)."""
        from pyspark.sql import functions as F

        if not columns:
            return {}
        approx = rows.agg(*[F.approx_count_distinct(c, rsd=0.05).alias(c) for c in columns]).first().asDict()
        maybe = [c for c in columns if approx[c] <= MAX_MASK_VALUES * 1.25]  # 5% error: margin to spare
        if not maybe:
            return {}
        sets = rows.agg(*[F.collect_set(c).alias(c) for c in maybe]).first().asDict()
        return {c: sorted(sets[c]) for c in maybe if len(sets[c]) <= MAX_MASK_VALUES}

    def _block(self, spark: SparkSession, rows: DataFrame, p: BlockPlan, values: dict[str, list]) -> DataFrame:
        """The scored rows with this block's features added (see the module docstring)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        b, ev = p.block, self.events
        g, t = b.group_by, F.col("__t")
        bits = {c: values[c] for c in b.first_seen if c in values}
        many = [c for c in b.first_seen if c not in bits]

        def event_weights(df: DataFrame, scored: bool) -> DataFrame:
            """Weights of event rows (scored rows, or event-level rows before the day)."""
            cols = [F.lit(scored).alias("__scored")]
            for w in p.windows:
                in_w = F.lit(True) if scored else w.event.holds(t)
                cols.append(F.when(in_w, F.lit(1)).otherwise(F.lit(0)).cast("bigint").alias(f"__n{w.hours}"))
                cols += [F.when(in_w, F.col(c)).cast("double").alias(f"__s_{c}_{w.hours}") for c in b.sum]
            cols.append(t.alias("__prev"))
            cols += [_bit(c, bits[c]).alias(f"__b_{c}") for c in bits]
            return df.select("*", *cols)

        hist_cols = _cols(g, ev.timestamp, *b.sum, *b.first_seen)
        parts = [event_weights(rows, True)]
        if p.event_spans:
            parts.append(event_weights(read_events(spark, self.raw_root, ev, self.partition_days(p.event_spans, ev), hist_cols,
                                                  p.event_spans), False))
        summary = self._summary(spark, p, bits) if p.whole_spans else None
        if summary is not None:
            parts.append(summary)
        union = parts[0]
        for part in parts[1:]:
            union = union.unionByName(part, allowMissingColumns=True)

        order = Window.partitionBy(g).orderBy("__t")
        before = order.rangeBetween(Window.unboundedPreceding, -1)

        def prefix(col: str, lag_hours: int | None = None, agg=F.sum) -> Column:
            frame = before if lag_hours is None else order.rangeBetween(Window.unboundedPreceding,
                                                                        -lag_hours * US_PER_HOUR - 1)
            return agg(F.col(col)).over(frame)

        pre: list[Column] = []
        for w in p.windows:
            n = f"__n{w.hours}"
            pre.append((F.coalesce(prefix(n), F.lit(0)) - F.coalesce(prefix(n, w.hours), F.lit(0))).alias(f"__cnt{w.hours}"))
            for c in b.sum:
                s = f"__s_{c}_{w.hours}"
                pre.append((F.coalesce(prefix(s), F.lit(0.0)) - F.coalesce(prefix(s, w.hours), F.lit(0.0)))
                           .alias(f"__sum_{c}_{w.hours}"))
        if b.since_previous:
            pre.append(prefix("__prev", agg=F.max).alias("__last"))
        for c in bits:
            pre.append(F.coalesce(prefix(f"__b_{c}", agg=F.bit_or), F.lit(0)).alias(f"__seen_{c}"))
        for col in ("__un", "__lm", "__lp"):  # counts of the group's summary row (one per group, before the day)
            if col in union.columns:
                pre.append(F.coalesce(prefix(col), F.lit(0)).alias(f"{col}_"))
        for col in ("__um", "__usd"):  # values of the summary row: the only non-null one before any scored row
            if col in union.columns:
                pre.append(prefix(col, agg=F.max).alias(f"{col}_"))
        keep = [c for c in rows.columns]
        scored = union.select(*keep, "__scored", *pre).where(F.col("__scored")).drop("__scored")
        for c in many:
            scored = self._first_seen_by_join(spark, scored, p, c)
        if p.label_events is not None:
            scored = scored.crossJoin(F.broadcast(_label_base(summary)))
        return scored.select(*keep, *self._features(p, bits))

    def _first_seen_by_join(self, spark: SparkSession, scored: DataFrame, p: BlockPlan, c: str) -> DataFrame:
        """`__seen_{c}` for a column with too many values for a bit each (a card's merchants): 1 when the (group,
        value) pair occurs in the lookback's whole days, or earlier on the scored day (a tie is not earlier).

        A join, not rows in the block's sorted union: the lookback holds millions of pairs, and sorting them with
        the scored rows (twice: by group, then by group and value) cost more than the rest of the block."""
        from pyspark.sql import functions as F

        g, ev = p.block.group_by, self.events
        before = (read_events(spark, self.raw_root, ev, self.partition_days([p.lookback], ev), _cols(g, c, ev.timestamp),
                              [p.lookback])
                  .select(g, c).distinct().select(g, c, F.lit(True).alias("__in_lookback")))
        today = scored.groupBy(g, c).agg(F.min("__t").alias("__first_t"))
        pairs = today.join(before, on=[today[g].eqNullSafe(before[g]), today[c].eqNullSafe(before[c])], how="left")
        pairs = pairs.select(today[g].alias("__pg"), today[c].alias("__pc"), "__first_t", "__in_lookback")
        joined = scored.join(pairs, on=[scored[g].eqNullSafe(pairs["__pg"]), scored[c].eqNullSafe(pairs["__pc"])],
                             how="left")
        seen = F.coalesce(F.col("__in_lookback"), F.lit(False)) | (F.col("__first_t") < F.col("__t"))
        return joined.select(*scored.columns, F.when(seen, 1).otherwise(0).cast("bigint").alias(f"__seen_{c}"))

    def _summary(self, spark: SparkSession, p: BlockPlan, bits: dict[str, list]) -> DataFrame:
        """One row per group at `D - 1 us` with the day-granular sums of every whole-day range of the block."""
        from pyspark.sql import functions as F

        b, ev = p.block, self.events
        t = F.col("__t")
        df = read_events(spark, self.raw_root, ev, self.partition_days(p.whole_spans, ev), self._summary_columns(p), p.whole_spans)
        aggs = []
        for w in p.windows:
            if w.whole is not None:
                aggs.append(F.sum(F.when(w.whole.holds(t), 1).otherwise(0)).cast("bigint").alias(f"__n{w.hours}"))
                aggs += [F.sum(F.when(w.whole.holds(t), F.col(c))).cast("double").alias(f"__s_{c}_{w.hours}")
                         for c in b.sum]
        if b.since_previous:
            aggs.append(F.max(F.when(p.lookback.holds(t), t)).alias("__prev"))
        for c in bits:
            aggs.append(F.bit_or(F.when(p.lookback.holds(t), _bit(c, bits[c]))).alias(f"__b_{c}"))
        if b.usual:
            # mean and sample standard deviation by Spark's own aggregates (updated one value at a time, so
            # identical amounts have no spread at all), not from sums of squares, which cancel catastrophically
            x = F.when(p.usual.holds(t), F.col(b.usual.column).cast("double"))
            aggs += [F.count(x).cast("bigint").alias("__un"), F.avg(x).alias("__um"), F.stddev_samp(x).alias("__usd")]
        if p.label_events is not None:
            aggs.append(F.sum(F.when(p.label_events.holds(t), 1).otherwise(0)).cast("bigint").alias("__lm"))
        summary = df.groupBy(b.group_by).agg(*aggs)
        if p.label_events is not None:
            summary = summary.join(self._positives(spark, p), on=b.group_by, how="full")
        return summary.select("*", F.lit(_us(self.day_start) - 1).alias("__t"), F.lit(False).alias("__scored"))

    def _positives(self, spark: SparkSession, p: BlockPlan) -> DataFrame:
        """Per group: the events of the label window with a matching outcome row before event time + horizon."""
        from pyspark.sql import functions as F

        lb, src, g = self.label, self.outcomes, p.block.group_by
        cols = _cols(lb.key, lb.event_timestamp, src.timestamp, g, *lb.where)
        df = read_events(spark, self.raw_root, src, self.partition_days([p.label_outcomes], src), cols, [p.label_outcomes])
        event_us = F.unix_micros(F.col(lb.event_timestamp))
        within = (F.col("__t") >= event_us) & (F.col("__t") < event_us + F.lit(lb.horizon_days * 24 * US_PER_HOUR))
        cond = p.label_events.holds(event_us) & within  # the label's own definition: an outcome in [t, t + horizon)
        for col, values in lb.where.items():
            cond = cond & F.col(col).isin(values)
        # one positive per event, however many outcome rows it has
        return df.where(cond).select(lb.key, g).distinct().groupBy(g).agg(F.count("*").cast("bigint").alias("__lp"))

    def _features(self, p: BlockPlan, bits: dict) -> list[Column]:
        """Feature columns from the prefix aggregates (names and kinds: HistorySpec.feature_names)."""
        from pyspark.sql import functions as F

        b = p.block
        pr = b.prefix
        out: list[Column] = []
        for w in p.windows:
            if b.count:
                out.append(F.col(f"__cnt{w.hours}").cast("bigint").alias(f"{pr}_count_{w.hours}h"))
            out += [F.col(f"__sum_{c}_{w.hours}").cast("double").alias(f"{pr}_sum_{c}_{w.hours}h") for c in b.sum]
        for c in b.first_seen:
            if c in bits:
                seen = F.col(f"__seen_{c}").bitwiseAND(_bit(c, bits[c])) != 0
            else:
                seen = F.col(f"__seen_{c}") > 0
            out.append(F.when(seen, 0).otherwise(1).cast("bigint").alias(f"{pr}_first_{c}"))
        if b.since_previous:
            cap = float(24 * (b.lookback_days + 1))
            hours = (F.col("__t") - F.col("__last")) / F.lit(float(US_PER_HOUR))
            out.append(F.coalesce(F.least(hours, F.lit(cap)), F.lit(cap)).cast("double")
                       .alias(f"{pr}_hours_since_previous"))
        if b.usual:
            c, d = b.usual.column, b.usual.days
            n, mean, std, x = F.col("__un_"), F.col("__um_"), F.col("__usd_"), F.col(c).cast("double")
            ratio = F.when((n > 0) & (mean > 0) & x.isNotNull(), x / mean).otherwise(F.lit(1.0))
            z = F.when((n > 1) & (std > 0) & x.isNotNull(), (x - mean) / std).otherwise(F.lit(0.0))
            out += [ratio.cast("double").alias(f"{pr}_{c}_ratio_{d}d"), z.cast("double").alias(f"{pr}_{c}_zscore_{d}d"),
                    n.cast("bigint").alias(f"{pr}_count_{d}d")]
        if b.label_rate:
            d, prior = b.label_rate.days, float(b.label_rate.prior)
            pos, n = F.col("__lp_").cast("double"), F.col("__lm_").cast("double")
            n = F.greatest(n, pos)  # never a rate above 1, even if an outcome's event is missing from the source
            rate = F.when(n + prior > 0, (pos + F.lit(prior) * F.col("__base")) / (n + F.lit(prior))).otherwise(
                F.col("__base"))
            out += [rate.cast("double").alias(f"{pr}_label_rate_{d}d"), n.cast("bigint").alias(f"{pr}_matured_{d}d")]
        return out


def read_events(spark: SparkSession, raw_root: Path, source: EventSource, days: list[dt.date], columns: list[str],
                spans: list[Span]) -> DataFrame:
    """`columns` of the events of `source` with timestamps in `spans`, read from the partitions of `days` only (the
    timestamp, not the partition, decides), plus `__t`: the timestamp in microseconds since the epoch."""
    from pyspark.sql import functions as F

    paths = [str(raw_root / source.name / partition_name(d)) for d in days]
    missing = [p for p in paths if not Path(p).is_dir()]
    if missing:
        raise LandingError(
            f"{len(missing)} partition(s) of {source.name!r} needed by the event feature job have not landed, "
            f"e.g. {missing[0]}. Land them (or backfill the ingestion), then clear the task.")
    from batchml.sparkconf import PARQUET_READ_OPTIONS

    reader = spark.read.options(**PARQUET_READ_OPTIONS)
    if source.schema:
        reader = reader.schema(source.schema)
    df = reader.parquet(*paths)
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise SpecError(f"source {source.name!r} has no column(s) {absent}; columns: {', '.join(df.columns)}")
    t = F.unix_micros(F.col(source.timestamp))
    inside = spans[0].holds(t)
    for s in spans[1:]:
        inside = inside | s.holds(t)
    return df.select(*columns).where(inside).withColumn("__t", t)


def _bit(column: str, known: list) -> Column:
    """One bit per value of `column`: bit i for the i-th of `known` (1-based), bit 63 for null, bit 0 for any other
    value (seen only in history: it can never match a scored event's value, which is always known or null)."""
    from pyspark.sql import functions as F

    pos = F.array_position(F.array(*[F.lit(v) for v in known]), F.col(column)) if known else F.lit(0)
    pos = F.when(F.col(column).isNull(), F.lit(MAX_MASK_VALUES + 1)).otherwise(pos)
    return F.call_function("shiftleft", F.lit(1).cast("bigint"), pos.cast("int"))


def _label_base(summary: DataFrame) -> DataFrame:
    """One row: the positive rate of all groups over the label window, the prior mean of the smoothed rate. The
    summary is the same DataFrame the union holds, so Spark computes it once (a reused exchange)."""
    from pyspark.sql import functions as F

    s = summary.agg(F.sum("__lp").alias("p"), F.sum("__lm").alias("n"))
    return s.select(F.when(F.col("n") > 0, F.coalesce(F.col("p"), F.lit(0)) / F.col("n"))
                    .otherwise(F.lit(0.0)).cast("double").alias("__base"))


def _cols(*names: str) -> list[str]:
    return list(dict.fromkeys(names))


def _day_list(days: list[dt.date]) -> str:
    if not days:
        return "none"
    return f"{days[0]}..{days[-1]} ({len(days)} days)" if len(days) > 2 else ", ".join(map(str, days))


def job_for_spec(spec: UseCaseSpec, raw_root: Path, as_of: dt.date) -> EventFeatureJob:
    """The event feature job of an event-entity spec as of `as_of` (pure Python: its read plan needs no Spark)."""
    if not spec.is_event:
        raise SpecError(f"use case {spec.name!r}: its entity is a population, not an event (entity.kind: event)")
    needs_outcomes = any(b.label_rate for b in spec.features.history)
    return EventFeatureJob(Path(raw_root), as_of, EventSource.of(spec, spec.entity.source), spec.entity.key,
                           spec.event_features, spec.label if needs_outcomes else None,
                           EventSource.of(spec, spec.label.source) if needs_outcomes else None)


def build_event_features(spark: SparkSession, raw_root: Path, as_of: dt.date, *, events: EventSource, key: str,
                         features: EventFeaturesSpec, label: EventOutcomeLabelSpec | None = None,
                         outcomes: EventSource | None = None) -> DataFrame:
    """The feature table of the events of `as_of - 1` (lazy DataFrame): one row per event with
    `events.timestamp` in `[as_of - 1 day, as_of)`, with its `key`, `as_of_date`, its timestamp, then the features
    in `features.feature_names()` order. `label`/`outcomes` (the label's source) are needed by label_rate blocks.

    Runs small jobs now: the values of each first_seen column on the scored day (see `EventFeatureJob._values`)."""
    job = EventFeatureJob(Path(raw_root), as_of, events, key, features, label, outcomes)
    return job.build(spark)


def build_event_labels(spark: SparkSession, raw_root: Path, day: dt.date, *, events: EventSource, key: str,
                       label: EventOutcomeLabelSpec, outcomes: EventSource, today: dt.date | None = None) -> DataFrame:
    """Labels of the events of `day` (timestamps in `[day, day + 1)`), for training: `key`, the timestamp and
    `label.name` (1 when an outcome row matching `where` has its time in `[t, t + horizon)`, else 0).

    A label is final once matured (`t + horizon`), so the day's labels are read only from `day + 1 + horizon_days`
    on: refused (SpecError) when `today` (the training date; default: the real date) is earlier. Reads the day's
    events (key and time) and the outcome partitions of `[day, day + 1 + horizon)`, none on or after `today`."""
    from pyspark.sql import functions as F

    horizon = label.horizon_days
    matured_on = day + dt.timedelta(days=1 + horizon)
    if (today or dt.datetime.now(dt.UTC).date()) < matured_on:
        raise SpecError(f"labels of the events of {day} are final on {matured_on} ({horizon} days after the day's "
                        "last event); train on earlier days")
    root = Path(raw_root)
    day_start = as_of_timestamp(day)
    scored = read_events(spark, root, events, [day], [key, events.timestamp], [Span(day_start, day_start + DAY)])
    span = Span(day_start, day_start + DAY + horizon * DAY)  # every outcome that can label an event of the day
    late = int(-(-outcomes.lateness_hours // 24))
    days = sorted({d + dt.timedelta(days=i) for d in span.days() for i in range(late + 1)} & set(
        Span(day_start, as_of_timestamp(matured_on)).days()))
    cols = _cols(label.key, label.event_timestamp, outcomes.timestamp, *label.where)
    rows = read_events(spark, root, outcomes, days, cols, [span])
    event_us = F.unix_micros(F.col(label.event_timestamp))
    cond = (F.col("__t") >= event_us) & (F.col("__t") < event_us + F.lit(horizon * 24 * US_PER_HOUR))
    for col, values in label.where.items():
        cond = cond & F.col(col).isin(values)
    positives = rows.where(cond).select(F.col(label.key).alias(key)).distinct().withColumn("__pos", F.lit(1))
    return scored.join(positives, on=key, how="left").select(
        key, events.timestamp, F.coalesce(F.col("__pos"), F.lit(0)).cast("bigint").alias(label.name))
