"""The data side of a spec: raw sources and their columns, the entity, the label, the features, extra expectations.

Every field's docstring doubles as the spec reference (docs/add-a-use-case.md points here).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Tag, field_validator

# FeatureKind and words live in base (specs.events needs them too) and are re-exported from here
from batchml.specs.base import ColumnName, FeatureKind, Identifier, Problem, SpecModel, kind_or, words
from batchml.specs.events import HOUR_OF_DAY, EventEntitySpec, EventOutcomeLabelSpec, HistorySpec

ColumnType = Literal["string", "int", "double", "timestamp", "date", "bool"]
NUMERIC_TYPES = ("int", "double")
ExpectationArg = str | int | float | bool | None | list[str | int | float | bool | None]


class ColumnSpec(SpecModel):
    """One column of a raw source, and the checks Great Expectations runs on it."""

    type: ColumnType
    """Logical type; landed Parquet must carry a matching physical type."""
    nullable: bool = False
    """Whether nulls are allowed."""
    unique: bool = False
    """Values must be unique within a landed partition."""
    allowed: list[str] | None = None
    """The closed set of allowed values (categorical columns)."""
    min: float | None = None
    """Smallest allowed value (numeric columns)."""
    max: float | None = None
    """Largest allowed value (numeric columns)."""
    mostly: float = Field(default=1.0, gt=0.0, le=1.0)
    """Share of rows that must satisfy `allowed`/`min`/`max`; below 1 tolerates, e.g., a new category."""
    max_length: int | None = Field(default=None, ge=1)
    """Longest allowed string value. Keys (the entity key, unique columns) get the spec's `max_key_length` when unset."""
    description: str = ""

    def problems(self) -> list[Problem]:
        out = []
        if self.max_length is not None and self.type != "string":
            out.append(("max_length", "max_length needs a string column"))
        if (self.min is not None or self.max is not None) and self.type not in NUMERIC_TYPES:
            out.append(("", f"min/max need a numeric column, this one is {self.type!r}"))
        if self.allowed is not None and self.type != "string":
            out.append(("allowed", "allowed values need a string column"))
        if self.min is not None and self.max is not None and self.min > self.max:
            out.append(("", f"min {self.min} is larger than max {self.max}"))
        return out


class SourceSpec(SpecModel):
    """A raw source landed as daily Parquet partitions: `<landing>/<source>/dt=YYYY-MM-DD/*.parquet`."""

    kind: Literal["entity", "events", "snapshot"]
    """`entity`: rows are entities (e.g. customers) landed when they appear; `events`: timestamped facts;
    `snapshot`: each landed partition is a full copy of a table of entities (features as of D read the newest
    partition landed before D; no event windows)."""
    timestamp: ColumnName | None = None
    """Event time (events) or the time the entity starts to exist (entity); optional for a snapshot."""
    columns: dict[ColumnName, ColumnSpec] = Field(min_length=1)
    """Declared schema; landed files must have exactly these columns."""
    rename: dict[str, ColumnName] = {}
    """Columns of an ingested file renamed on landing (`batchml ingest`), e.g. {rownames: customer_id}."""
    require_rows: bool = False
    """Freshness: the newest partition a run reads must hold at least one row."""
    lateness_hours: float = Field(default=0.0, ge=0.0, le=24 * 365)
    """Events source: how late an event may land, i.e. sit in the partition of a day after its own. The raw check
    refuses a timestamp outside `[D - lateness, D + 1 day)` in partition D (an event from the future, or landed in
    the wrong partition, would otherwise be dropped or double-counted without a word)."""
    description: str = ""

    def problems(self) -> list[Problem]:
        out = []
        if self.lateness_hours and self.kind != "events":
            out.append(("lateness_hours", "only an events source is partitioned by event time"))
        if self.timestamp is not None:
            col = self.columns.get(self.timestamp)
            if col is None:
                out.append(("timestamp", f"{self.timestamp!r} is not a column of this source; columns: "
                                         f"{', '.join(self.columns)}"))
            elif col.type != "timestamp":
                out.append(("timestamp", f"column {self.timestamp!r} has type {col.type!r}; expected 'timestamp'"))
        elif self.kind != "snapshot":
            out.append(("timestamp", f"a source of kind {self.kind!r} needs a timestamp column"))
        for original, renamed in self.rename.items():
            if renamed not in self.columns:
                out.append((f"rename.{original}", f"{renamed!r} is not a declared column"))
        return out


class EntitySpec(SpecModel):
    """Who is scored: rows of an entity source, from their start time until they leave, each as of the run's date
    (or the rows of a snapshot source's newest partition). See EventEntitySpec (`kind: event`) for scoring each
    event of an events source as of its own time."""

    kind: Literal["population"] = "population"
    """`population` (the default): entities scored as of a date; `event`: see EventEntitySpec."""
    key: ColumnName
    """Entity id column, present in the entity source and every events source."""
    source: Identifier
    """The entity source."""
    leaves_on: Identifier | None = None
    """Events source whose first event for an entity removes it from the population (e.g. churn events)."""


class EventLabelSpec(SpecModel):
    """Binary label: does an event of `source` happen within `horizon_days` after the as-of time?"""

    kind: Literal["event_within_horizon"] = "event_within_horizon"
    name: Identifier
    source: Identifier
    horizon_days: int = Field(ge=1, le=3650)


class ColumnLabelSpec(SpecModel):
    """Binary label read from a column of a snapshot entity source: 1 where it equals `positive`, else 0.

    The column is never a feature. The snapshot used is the one the features come from (newest before the date).
    """

    kind: Literal["column"]
    name: Identifier
    column: ColumnName
    positive: str | int | bool
    """The value meaning "yes" (e.g. "Yes", 1, true); the column must hold exactly two values."""

    def problem_with(self, values) -> str | None:
        """Why the distinct non-null `values` of the label column cannot be this binary label, or None."""
        classes = sorted({str(v) for v in values})
        if len(classes) != 2:
            return f"a binary label needs exactly two classes, the column has {len(classes)}: {classes[:10]}"
        if str(self.positive) not in classes:
            return f"label.positive {self.positive!r} is not one of its values {classes}"
        return None


AnyEntitySpec = Annotated[
    Annotated[EntitySpec, Tag("population")] | Annotated[EventEntitySpec, Tag("event")],
    kind_or("population", "event"),
]
"""`entity`: a population of entities (`kind: population`, the default) or the events of a source (`kind: event`)."""

LabelSpec = Annotated[
    Annotated[EventLabelSpec, Tag("event_within_horizon")] | Annotated[ColumnLabelSpec, Tag("column")]
    | Annotated[EventOutcomeLabelSpec, Tag("event_outcome")],
    kind_or("event_within_horizon", "column", "event_outcome"),
]
"""`label`: an event within a horizon after the as-of date, a column of a snapshot, or (event entity) an outcome row
referring to the scored event within a horizon after it."""


class TrendSpec(SpecModel):
    """Ratio of the daily event rate over a short window to that over a long window (1 = steady, <1 = falling)."""

    short: int = Field(ge=1)
    long: int = Field(ge=2)


MISSING_SUFFIX = "_was_missing"
"""Suffix of the 0/1 feature telling that a filled column's value was missing (`features.missing_indicators`)."""


def singular(phrase: str) -> str:
    """The last word of `phrase` in the singular, naively (tickets -> ticket, categories -> category); names that
    do not follow the rule get their words from `features.descriptions`."""
    head, _, last = phrase.rpartition(" ")
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        last = last[:-1]
    return f"{head} {last}".strip()



class AggregateSpec(SpecModel):
    """Windowed aggregates over one events source, per entity, using only events strictly before the as-of time."""

    source: Identifier
    prefix: Identifier
    """Prefix of every feature name this block produces, e.g. `txn` -> `txn_count_30d`."""
    windows: list[int] = Field(min_length=1)
    """Window lengths in days."""
    count: bool = True
    sum: list[ColumnName] = []
    mean: list[ColumnName] = []
    max: list[ColumnName] = []
    distinct: list[ColumnName] = []
    """Distinct values of these columns in each window."""
    share: dict[ColumnName, list[str]] = {}
    """Share of events in each window whose column equals each listed value, e.g. {channel: [app]}."""
    recency: bool = False
    """Days since the entity's last event (capped at the longest window + 1 when there is none)."""
    trend: TrendSpec | None = None

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[int]) -> list[int]:
        if any(w < 1 or w > 3650 for w in v):
            raise ValueError("every window must be between 1 and 3650 days")
        if len(set(v)) != len(v):
            raise ValueError("windows must not repeat")
        return sorted(v)

    def problems(self) -> list[Problem]:
        t = self.trend
        if t is not None and (t.short not in self.windows or t.long not in self.windows or t.short >= t.long):
            return [("trend", f"short ({t.short}) and long ({t.long}) must be windows, short < long")]
        return []

    def feature_descriptions(self) -> dict[str, str]:
        """Plain words for each feature this block produces, generated from its definition (e.g. `txn_count_7d` ->
        "number of transactions in the last 7 days"); `features.descriptions` overrides any of them."""
        events, one = words(self.source), singular(words(self.source))
        out: dict[str, str] = {}
        for w in self.windows:
            last = f"in the last {w} days" if w > 1 else "in the last day"
            if self.count:
                out[f"{self.prefix}_count_{w}d"] = f"number of {events} {last}"
            out.update({f"{self.prefix}_sum_{c}_{w}d": f"total {words(c)} of {events} {last}" for c in self.sum})
            out.update({f"{self.prefix}_mean_{c}_{w}d": f"average {words(c)} per {one} {last}" for c in self.mean})
            out.update({f"{self.prefix}_max_{c}_{w}d": f"largest {words(c)} of a {one} {last}" for c in self.max})
            out.update({f"{self.prefix}_distinct_{c}_{w}d": f"number of distinct {words(c)} values among {events} "
                                                            f"{last}" for c in self.distinct})
            out.update({f"{self.prefix}_share_{c}_{v}_{w}d": f"share of {events} with {words(c)} {v} {last}"
                        for c, vals in self.share.items() for v in vals})
        if self.recency:
            out[f"{self.prefix}_days_since_last"] = (f"days since the last {one} (none in {max(self.windows)} days: "
                                                     f"{max(self.windows) + 1})")
        if self.trend:
            s, lg = self.trend.short, self.trend.long
            out[f"{self.prefix}_trend_{s}d_{lg}d"] = (f"daily rate of {events} in the last {s} days relative to the "
                                                      f"last {lg} days (1 = steady, below 1 = falling)")
        return out

    def feature_names(self) -> dict[str, FeatureKind]:
        """The features this block produces, name -> kind, in table order."""
        p = self.prefix
        names: dict[str, FeatureKind] = {}
        for w in self.windows:
            if self.count:
                names[f"{p}_count_{w}d"] = "count"
            names.update({f"{p}_sum_{c}_{w}d": "amount" for c in self.sum})
            names.update({f"{p}_mean_{c}_{w}d": "amount" for c in self.mean})
            names.update({f"{p}_max_{c}_{w}d": "amount" for c in self.max})
            names.update({f"{p}_distinct_{c}_{w}d": "count" for c in self.distinct})
            names.update({f"{p}_share_{c}_{v}_{w}d": "share" for c, vals in self.share.items() for v in vals})
        if self.recency:
            names[f"{p}_days_since_last"] = "days"
        if self.trend:
            names[f"{p}_trend_{self.trend.short}d_{self.trend.long}d"] = "ratio"
        return names


class CustomFeaturesSpec(SpecModel):
    """A Python function adding features that declarative aggregates cannot express."""

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """`module:function`, importable where the tasks run; receives a FeatureContext, returns a Spark DataFrame."""
    columns: dict[ColumnName, FeatureKind] = Field(min_length=1)
    """The columns it returns besides the entity key, with their kind (sets the checks run on them)."""


class FeaturesSpec(SpecModel):
    """How the feature table is built as of a date."""

    static: list[ColumnName] = []
    """Categorical columns of the entity source copied as they are (e.g. plan, region)."""
    numeric: list[ColumnName] = []
    """Numeric (int/double) columns of the entity source copied as they are (e.g. monthly_charges)."""
    fill: dict[ColumnName, str | float] = {}
    """Value replacing nulls in a static or numeric column (e.g. {total_charges: 0}); other nulls fail the checks."""
    missing_indicators: list[ColumnName] | None = None
    """Filled columns that also get a 0/1 feature `<column>_was_missing` (1 where the value was missing and
    filled). Unset: every column in `fill`; `[]`: none. The model can learn from missingness itself, and reason
    codes show a filled value as missing (no value, "missing" in words) instead of as if it had been observed;
    without an indicator a filled value cannot be told apart from an observed one."""
    descriptions: dict[ColumnName, str] = {}
    """Plain words for features, shown to analysts next to reason codes in the score table, e.g.
    {txn_count_7d: "transactions in the last 7 days"}. Without one: the entity column's `description` (static and
    numeric features), words generated from the definition (tenure, aggregates, missing indicators), or the
    feature's name with spaces."""
    tenure: bool = True
    """Add `tenure_days`: days from the entity's start (its source's timestamp) to the as-of time. Default true;
    false for an event entity (an event has no tenure; the history blocks' `since_previous` is its counterpart)."""
    aggregates: list[AggregateSpec] = []
    """Population entity: windowed aggregates of events sources per entity, as of the date."""
    history: list[HistorySpec] = []
    """Event entity: point-in-time features of each event from strictly earlier events of the same group (card,
    merchant, ...), one block per group; see HistorySpec."""
    time_of_day: bool = False
    """Event entity: `hour_of_day`, the event's hour in UTC as a fraction (13.5 = 13:30), in [0, 24)."""
    custom: CustomFeaturesSpec | None = None
    """Optional function adding columns when declarative features are not enough."""
    schedule: str | None = "@daily"
    """Airflow schedule of the feature DAG (cron or preset); null for manual runs only."""

    def problems(self) -> list[Problem]:
        out = []
        for col, value in self.fill.items():
            if col in self.numeric and isinstance(value, str):
                out.append((f"fill.{col}", f"{col!r} is numeric; fill it with a number"))
            elif col in self.static and not isinstance(value, str):
                out.append((f"fill.{col}", f"{col!r} is categorical; fill it with a string"))
            elif col not in self.numeric and col not in self.static:
                out.append((f"fill.{col}", "only static or numeric features can be filled"))
        overlap = set(self.static) & set(self.numeric)
        if overlap:
            out.append(("numeric", f"{sorted(overlap)} are also static (categorical) features"))
        prefixes: set[str] = set()
        for i, agg in enumerate(self.aggregates):
            if agg.prefix in prefixes:
                out.append((f"aggregates[{i}].prefix", f"prefix {agg.prefix!r} is used by another aggregate block"))
            prefixes.add(agg.prefix)
        for i, block in enumerate(self.history):
            if block.prefix in prefixes:
                out.append((f"history[{i}].prefix", f"prefix {block.prefix!r} is used by another block"))
            prefixes.add(block.prefix)
        counted = self.names()
        reported = set(self.indicator_columns()) | overlap  # each has its own message
        repeated = sorted({n for n in counted if counted.count(n) > 1} - reported)
        if repeated:
            out.append(("", f"feature name(s) {repeated} are produced twice (a column of the entity and a generated "
                            "feature, or two blocks): rename a prefix or drop the column"))
        for i, col in enumerate(self.missing_indicators or []):
            if col not in self.fill:
                out.append((f"missing_indicators[{i}]", f"{col!r} is not filled (features.fill): only a filled column "
                                                        "can have been missing, other nulls stop the feature DAG"))
        names = self.names()
        for name in self.indicator_columns():
            if names.count(name) > 1:
                out.append(("missing_indicators", f"{name!r} is also the name of another feature; rename that one"))
        known = set(names)
        for name, text in self.descriptions.items():
            if name not in known:
                out.append((f"descriptions.{name}", f"{name!r} is not a feature of this spec; features: "
                                                    f"{', '.join(names)}"))
            elif not text.strip():
                out.append((f"descriptions.{name}", "give some words, or leave the feature out"))
        return out

    def indicator_columns(self) -> dict[str, FeatureKind]:
        """The `<column>_was_missing` features (0/1, checked as a share), in table order: right after `numeric`."""
        filled = list(self.fill) if self.missing_indicators is None else self.missing_indicators
        ordered = [c for c in [*self.static, *self.numeric] if c in filled]
        return {f"{c}{MISSING_SUFFIX}": "share" for c in ordered}

    def names(self) -> list[str]:
        """Every feature this block declares, in table order (static, numeric, missing indicators, tenure_days,
        aggregates, history blocks, hour_of_day, custom columns)."""
        out = [*self.static, *self.numeric, *self.indicator_columns()]
        if self.tenure:
            out.append("tenure_days")
        for agg in self.aggregates:
            out += list(agg.feature_names())
        for block in self.history:
            out += list(block.feature_names())
        if self.time_of_day:
            out.append(HOUR_OF_DAY)
        if self.custom:
            out += list(self.custom.columns)
        return out


class ExpectationSpec(SpecModel):
    """An extra Great Expectations expectation, by its snake_case name and arguments."""

    expectation: str = Field(pattern=r"^expect_[a-z_]+$")
    """E.g. `expect_column_values_to_be_between`."""
    kwargs: dict[str, ExpectationArg] = {}


class ExpectationsSpec(SpecModel):
    """Expectations added to those derived from the schema."""

    raw: dict[Identifier, list[ExpectationSpec]] = {}
    features: list[ExpectationSpec] = []
