"""Use-case specs: YAML files validated into typed models, and their discovery.

A spec declares everything about one model: raw sources and their schemas, the entity, timestamps, the label,
features, expectations and the settings of each pipeline stage. DAGs are generated from every spec found, so
adding a model means adding a spec. Every model forbids unknown keys: a typo is an error, not a silent default.
A bad spec raises SpecError naming the file, the dotted field and the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError, field_validator

from batchml.errors import SpecError

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
"""Names that end up in paths, DAG ids and SQL identifiers: lower-case letters, digits, underscores."""

Identifier = Annotated[str, Field(pattern=IDENTIFIER)]
ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
ColumnType = Literal["string", "int", "double", "timestamp", "date", "bool"]
NUMERIC_TYPES = ("int", "double")
ExpectationArg = str | int | float | bool | None | list[str | int | float | bool | None]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ColumnSpec(_Spec):
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
    description: str = ""


class SourceSpec(_Spec):
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
    description: str = ""


class EntitySpec(_Spec):
    """Who is scored: rows of an entity source, from their start time until they leave."""

    key: ColumnName
    """Entity id column, present in the entity source and every events source."""
    source: Identifier
    """The entity source."""
    leaves_on: Identifier | None = None
    """Events source whose first event for an entity removes it from the population (e.g. churn events)."""


class EventLabelSpec(_Spec):
    """Binary label: does an event of `source` happen within `horizon_days` after the as-of time?"""

    kind: Literal["event_within_horizon"] = "event_within_horizon"
    name: Identifier
    source: Identifier
    horizon_days: int = Field(ge=1, le=3650)


class ColumnLabelSpec(_Spec):
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


def _kind_or(default: str, *others: str):
    """Discriminator of a union of specs: the `kind` key, or `default` when a spec leaves it out."""

    def pick(value) -> str:
        if isinstance(value, dict):
            return value.get("kind", default)
        return getattr(value, "kind", default)

    kinds = ", ".join(repr(k) for k in (default, *others))
    return Discriminator(pick, custom_error_type="unknown_kind", custom_error_message=f"kind must be one of {kinds}")


LabelSpec = Annotated[
    Annotated[EventLabelSpec, Tag("event_within_horizon")] | Annotated[ColumnLabelSpec, Tag("column")],
    _kind_or("event_within_horizon", "column"),
]

class TrendSpec(_Spec):
    """Ratio of the daily event rate over a short window to that over a long window (1 = steady, <1 = falling)."""

    short: int = Field(ge=1)
    long: int = Field(ge=2)


class AggregateSpec(_Spec):
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


FeatureKind = Literal["categorical", "numeric", "count", "amount", "share", "days", "ratio"]


class CustomFeaturesSpec(_Spec):
    """A Python function adding features that declarative aggregates cannot express."""

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """`module:function`, importable where the tasks run; receives a FeatureContext, returns a Spark DataFrame."""
    columns: dict[ColumnName, FeatureKind] = Field(min_length=1)
    """The columns it returns besides the entity key, with their kind (sets the checks run on them)."""


class FeaturesSpec(_Spec):
    """How the feature table is built as of a date."""

    static: list[ColumnName] = []
    """Categorical columns of the entity source copied as they are (e.g. plan, region)."""
    numeric: list[ColumnName] = []
    """Numeric (int/double) columns of the entity source copied as they are (e.g. monthly_charges)."""
    fill: dict[ColumnName, str | float] = {}
    """Value replacing nulls in a static or numeric column (e.g. {total_charges: 0}); other nulls fail the checks."""
    tenure: bool = True
    """Add `tenure_days`: days from the entity's start (its source's timestamp) to the as-of time."""
    aggregates: list[AggregateSpec] = []
    custom: CustomFeaturesSpec | None = None
    """Optional function adding columns when declarative features are not enough."""
    schedule: str | None = "@daily"
    """Airflow schedule of the feature DAG (cron or preset); null for manual runs only."""


class ExpectationSpec(_Spec):
    """An extra Great Expectations expectation, by its snake_case name and arguments."""

    expectation: str = Field(pattern=r"^expect_[a-z_]+$")
    """E.g. `expect_column_values_to_be_between`."""
    kwargs: dict[str, ExpectationArg] = {}


class ExpectationsSpec(_Spec):
    """Expectations added to those derived from the schema."""

    raw: dict[Identifier, list[ExpectationSpec]] = {}
    features: list[ExpectationSpec] = []


MetricName = Literal["roc_auc", "pr_auc", "log_loss", "brier", "top_decile_capture"]
LOWER_IS_BETTER = ("log_loss", "brier")


class TimeSplitSpec(_Spec):
    """Snapshots every `every_days`, the newest one `horizon` days before the training date (its label has just
    matured); oldest `train` snapshots train, then `validation` (early stopping, tuning), then `test`."""

    kind: Literal["time"] = "time"
    every_days: int = Field(default=7, ge=1, le=365)
    train: int = Field(default=8, ge=1, le=520)
    validation: int = Field(default=2, ge=1, le=52)
    test: int = Field(default=2, ge=1, le=52)
    purge: bool = True
    """Skip snapshots whose label window would reach into the next block (no outcome seen twice across blocks)."""


class RandomSplitSpec(_Spec):
    """One snapshot (the training date's) split at random, stratified by label, with a fixed seed: for data with no
    time axis (a `column` label). Shares of validation and test; the rest trains."""

    kind: Literal["random"]
    validation: float = Field(default=0.2, gt=0.0, lt=0.5)
    test: float = Field(default=0.2, gt=0.0, lt=0.5)
    seed: int = 42


SplitSpec = Annotated[
    Annotated[TimeSplitSpec, Tag("time")] | Annotated[RandomSplitSpec, Tag("random")],
    _kind_or("time", "random"),
]


class SearchSpace(_Spec):
    """One tuned hyper-parameter: a numeric range, or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[str | int | float | bool] | None = None

    @field_validator("choices")
    @classmethod
    def _choices(cls, v):
        if v is not None and len(v) < 1:
            raise ValueError("choices needs at least one value")
        return v


class CandidateSpec(_Spec):
    """A model family to tune and train."""

    name: Identifier
    kind: Literal["xgboost", "lightgbm", "logistic_regression"]
    params: dict[str, str | int | float | bool] = {}
    """Fixed hyper-parameters passed to the estimator."""
    search: dict[str, SearchSpace] = {}
    """Tuned hyper-parameters (Optuna, within the tuning budget)."""


class TuningSpec(_Spec):
    """Budget and objective of the hyper-parameter search, per candidate."""

    trials: int = Field(default=20, ge=1, le=10_000)
    timeout_seconds: int | None = Field(default=120, ge=1)
    """Wall-clock budget per candidate; the search stops at whichever of trials/timeout comes first."""
    metric: MetricName = "roc_auc"
    early_stopping_rounds: int = Field(default=50, ge=1)
    seed: int = 42


class GateSpec(_Spec):
    """Champion/challenger gate: absolute floors, then a margin over the current champion on the same test set."""

    mode: Literal["enabled", "dry_run", "disabled"] = "enabled"
    """`enabled`: move aliases; `dry_run`: record the verdict only; `disabled`: promote whatever clears the floors."""
    metric: MetricName = "roc_auc"
    margin: float = Field(default=0.005, ge=0.0)
    """How much better than the champion (absolute, in `metric`) the new model must be."""
    floors: dict[MetricName, float] = {"roc_auc": 0.6}
    """Minimum (or, for log_loss/brier, maximum) test values any model must reach."""


class TrainingSpec(_Spec):
    """Training: snapshots and split, candidates, tuning budget, evaluation and the gate."""

    schedule: str | None = "@weekly"
    model_name: Identifier | None = None
    """Registered model name; default: the use-case name."""
    split: SplitSpec = TimeSplitSpec()
    cv_folds: int = Field(default=0, ge=0, le=20)
    """If >= 2: also report the selected configuration's stratified k-fold cross-validated metrics (model card)."""
    candidates: list[CandidateSpec] = Field(
        default_factory=lambda: [
            CandidateSpec(name="xgboost", kind="xgboost"),
            CandidateSpec(name="lightgbm", kind="lightgbm"),
            CandidateSpec(name="baseline", kind="logistic_regression"),
        ],
        min_length=1,
    )
    baseline: Identifier = "baseline"
    """Candidate every model is compared with in the model card (a logistic regression)."""
    tuning: TuningSpec = TuningSpec()
    calibration: Literal["none", "sigmoid", "isotonic", "auto"] = "auto"
    """`auto` keeps an isotonic calibration only if it lowers the validation Brier score under cross-fitting."""
    segments: list[ColumnName] = []
    """Categorical features whose values get their own metrics (a model failing one group shows)."""
    min_rows: int = Field(default=500, ge=10)
    min_positives: int = Field(default=20, ge=2)
    """Least positives (and negatives) each of train, validation and test must hold."""
    shap_sample: int = Field(default=2000, ge=100, le=100_000)
    gate: GateSpec = GateSpec()


class ReasonCodeSpec(_Spec):
    """Per-row reason codes: the features with the largest SHAP contributions to the champion's score."""

    top: int = Field(default=3, ge=1, le=10)
    exact_share: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of rows, from the highest scores down, that get exact TreeSHAP codes (the rows analysts act on)."""
    others: Literal["approximate", "exact", "none"] = "approximate"
    """The other rows: `approximate` (Saabas, XGBoost only; LightGBM falls back to none), `exact`, or `none`."""
    exact_budget_seconds: float | None = Field(default=None, gt=0)
    """If set: time exact codes on a sample of the day's rows and extend them, from the highest scores down, to as
    many rows as fit in this many seconds (never fewer than `exact_share`). A small champion then explains every
    row; a deep one keeps exact codes where analysts act."""


class ScoringSpec(_Spec):
    """Batch scoring into the warehouse."""

    schedule: str | None = "@daily"
    """Cron/preset schedule; the DAG also runs when the use case's feature partition is published."""
    table: Identifier | None = None
    """Warehouse table of scores; default `<use case>_scores`. Views `<table>_champion`, `<table>_latest`."""
    bands: dict[Identifier, float] = {"high": 0.3, "medium": 0.1}
    """Risk band of a score: the first band whose threshold it reaches, from the highest; below all: `low`."""
    reason_codes: ReasonCodeSpec = ReasonCodeSpec()
    chunk_rows: int = Field(default=100_000, ge=1_000, le=5_000_000)
    """Rows scored at once: peak memory depends on this, not on the partition's size."""
    columns: list[ColumnName] = []
    """Feature columns copied into the score table as they are (e.g. segments analysts group by)."""
    shadow_challenger: bool = True
    """Also score the `challenger` alias, stored with model_role='challenger' (not in the analysts' views)."""
    export_url: str | None = Field(default=None, pattern=r"^s3://[^/]+(/.*)?$")
    """Optional s3://bucket/prefix: each date's scores are also written there as Parquet."""

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 < t <= 1.0 for t in v.values()):
            raise ValueError("band thresholds must be in (0, 1]")
        if "low" in v:
            raise ValueError("'low' is the band below every threshold; do not declare it")
        return dict(sorted(v.items(), key=lambda kv: -kv[1]))


class RetrainPolicySpec(_Spec):
    """When drift or decay requests a retraining run (check -> decide -> trigger)."""

    enabled: bool = True
    """False: monitoring records what it would request, and requests nothing (recommend only)."""
    score_psi: float = Field(default=0.25, gt=0)
    """Request when the score distribution's PSI reaches this."""
    important_features: int = Field(default=10, ge=1)
    """How many of the model's most important features (SHAP) the next rule watches."""
    drifted_important_share: float = Field(default=0.3, gt=0, le=1)
    """Request when this share of the important features has a PSI alert."""
    drifted_share: float = Field(default=0.25, gt=0, le=1)
    """Request when this share of all the model's features has a PSI alert (broad drift)."""
    auc_drop: float = Field(default=0.05, gt=0)
    """Request when the realized ROC AUC on matured labels falls this far below the test window's."""
    cooldown_days: int = Field(default=7, ge=0)
    """At most one drift-triggered request per this many days."""


class ChallengerReviewSpec(_Spec):
    """Promoting a shadow challenger on evidence from matured outcomes."""

    action: Literal["recommend", "promote"] = "recommend"
    margin: float = Field(default=0.01, ge=0)
    """ROC AUC by which the challenger must beat the champion on the same matured rows."""
    min_labelled_rows: int = Field(default=1000, ge=10)


class MonitoringSpec(_Spec):
    """Drift and realized-performance monitoring, after each date's scores are published."""

    schedule: str | None = None
    """Extra cron schedule; the DAG always runs when the use case's scores are published."""
    table: Identifier | None = None
    """Warehouse table of monitoring figures; default `<use case>_monitoring`."""
    psi_warn: float = Field(default=0.1, gt=0)
    psi_alert: float = Field(default=0.25, gt=0)
    ks_warn: float = Field(default=0.1, gt=0)
    ks_alert: float = Field(default=0.2, gt=0)
    unseen_warn: float = Field(default=0.01, gt=0)
    unseen_alert: float = Field(default=0.05, gt=0)
    retrain: RetrainPolicySpec = RetrainPolicySpec()
    challenger: ChallengerReviewSpec = ChallengerReviewSpec()


class UseCaseSpec(_Spec):
    """One use case: one model, its data, its pipelines."""

    name: Identifier
    """Use-case id: prefixes DAG ids (`<name>__features`), paths and tables. Must equal the file name."""
    description: str = Field(min_length=1)
    owner: str = "ml-platform"
    tags: list[str] = []
    start_date: dt.date = dt.date(2026, 1, 1)
    """First logical date the scheduled DAGs cover."""
    entity: EntitySpec
    sources: dict[Identifier, SourceSpec] = Field(min_length=1)
    label: LabelSpec
    features: FeaturesSpec
    expectations: ExpectationsSpec = ExpectationsSpec()
    training: TrainingSpec = TrainingSpec()
    scoring: ScoringSpec = ScoringSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    _path: Path | None = PrivateAttr(default=None)
    _sha256: str = PrivateAttr(default="")

    @property
    def path(self) -> Path | None:
        """File the spec was read from."""
        return self._path

    @property
    def sha256(self) -> str:
        """Content hash of the spec file, recorded as lineage."""
        return self._sha256

    @property
    def entity_source(self) -> SourceSpec:
        return self.sources[self.entity.source]

    @property
    def model_name(self) -> str:
        return self.training.model_name or self.name

    @property
    def score_table(self) -> str:
        return self.scoring.table or f"{self.name}_scores"

    @property
    def monitoring_table(self) -> str:
        return self.monitoring.table or f"{self.name}_monitoring"

    @property
    def is_snapshot(self) -> bool:
        """Whether the population comes from a snapshot table (newest partition before the date)."""
        return self.entity_source.kind == "snapshot"

    @property
    def horizon_days(self) -> int:
        """Days after a snapshot until its label is known: 0 for a label column of the snapshot itself."""
        return self.label.horizon_days if isinstance(self.label, EventLabelSpec) else 0

    @property
    def lookback_days(self) -> int:
        """Days of events the feature job reads before the as-of date."""
        return max((w for a in self.features.aggregates for w in a.windows), default=0)

    def dag_id(self, kind: str) -> str:
        return f"{self.name}__{kind}"


# Cross-field checks ----------------------------------------------------------------------------------------------


def _reference_errors(spec: UseCaseSpec) -> list[tuple[str, str]]:
    """Checks pydantic cannot express per field: names that must refer to declared sources and columns."""
    errors: list[tuple[str, str]] = []
    sources = spec.sources

    def need_source(path: str, name: str | None, *kinds: str) -> SourceSpec | None:
        if name is None:
            return None
        src = sources.get(name)
        if src is None:
            errors.append((path, f"unknown source {name!r}; declared sources: {', '.join(sorted(sources))}"))
        elif src.kind not in kinds:
            errors.append((path, f"source {name!r} is of kind {src.kind!r}, expected {' or '.join(map(repr, kinds))}"))
            return None
        return src

    def need_column(path: str, src_name: str, src: SourceSpec, column: str, types=None) -> ColumnSpec | None:
        col = src.columns.get(column)
        if col is None:
            errors.append(
                (path, f"{column!r} is not a column of source {src_name!r}; columns: {', '.join(src.columns)}")
            )
        elif types and col.type not in types:
            errors.append((path, f"column {column!r} of {src_name!r} has type {col.type!r}; expected one of {types}"))
        return col

    for name, src in sources.items():
        if src.timestamp is not None:
            need_column(f"sources.{name}.timestamp", name, src, src.timestamp, ("timestamp",))
        elif src.kind != "snapshot":
            errors.append((f"sources.{name}.timestamp", f"a source of kind {src.kind!r} needs a timestamp column"))
        for original, renamed in src.rename.items():
            if renamed not in src.columns:
                errors.append((f"sources.{name}.rename.{original}", f"{renamed!r} is not a declared column"))
        for cname, col in src.columns.items():
            where = f"sources.{name}.columns.{cname}"
            if (col.min is not None or col.max is not None) and col.type not in NUMERIC_TYPES:
                errors.append((where, f"min/max need a numeric column, {cname!r} is {col.type!r}"))
            if col.allowed is not None and col.type != "string":
                errors.append((where + ".allowed", "allowed values need a string column"))
            if col.min is not None and col.max is not None and col.min > col.max:
                errors.append((where, f"min {col.min} is larger than max {col.max}"))
        if src.kind == "events":
            need_column(f"sources.{name}.columns", name, src, spec.entity.key)

    ent = need_source("entity.source", spec.entity.source, "entity", "snapshot")
    feats = spec.features
    if ent is not None:
        need_column("entity.key", spec.entity.source, ent, spec.entity.key)
        for i, col in enumerate(feats.static):
            need_column(f"features.static[{i}]", spec.entity.source, ent, col)
        for i, col in enumerate(feats.numeric):
            need_column(f"features.numeric[{i}]", spec.entity.source, ent, col, NUMERIC_TYPES)
        if feats.tenure and ent.timestamp is None:
            errors.append(("features.tenure", f"source {spec.entity.source!r} has no timestamp to count tenure "
                                              "from; set tenure: false (or copy a tenure column via numeric)"))
        if ent.kind == "snapshot" and spec.entity.leaves_on:
            errors.append(("entity.leaves_on", "a snapshot source is the population itself; remove leaves_on"))
    for col, value in feats.fill.items():
        if col in feats.numeric and isinstance(value, str):
            errors.append((f"features.fill.{col}", f"{col!r} is numeric; fill it with a number"))
        elif col in feats.static and not isinstance(value, str):
            errors.append((f"features.fill.{col}", f"{col!r} is categorical; fill it with a string"))
        elif col not in feats.numeric and col not in feats.static:
            errors.append((f"features.fill.{col}", "only static or numeric features can be filled"))
    overlap = set(feats.static) & set(feats.numeric)
    if overlap:
        errors.append(("features.numeric", f"{sorted(overlap)} are also static (categorical) features"))
    need_source("entity.leaves_on", spec.entity.leaves_on, "events")
    label, split = spec.label, spec.training.split
    if isinstance(label, ColumnLabelSpec):
        if ent is not None and ent.kind != "snapshot":
            errors.append(("label.kind", "a column label needs a snapshot entity source (sources.*.kind: snapshot)"))
        elif ent is not None:
            col = need_column("label.column", spec.entity.source, ent, label.column)
            if col is not None and col.allowed is not None and str(label.positive) not in col.allowed:
                errors.append(("label.positive", f"{label.positive!r} is not in the column's allowed {col.allowed}"))
            if col is not None and col.allowed is not None and len(col.allowed) != 2:
                errors.append(("label.column", f"a binary label needs exactly two allowed values, got {col.allowed}"))
        if label.column in feats.static or label.column in feats.numeric or label.column == spec.entity.key:
            errors.append(("label.column", f"{label.column!r} is also a feature or the key: the label would leak"))
        if not isinstance(split, RandomSplitSpec):
            errors.append(("training.split", "a column label has no time axis: use {kind: random, ...}"))
    else:
        need_source("label.source", label.source, "events")
        if isinstance(split, RandomSplitSpec):
            errors.append(("training.split", "an event label is split by time: remove kind: random"))
    if spec.training.cv_folds == 1:
        errors.append(("training.cv_folds", "use 0 (off) or at least 2 folds"))

    prefixes: set[str] = set()
    for i, agg in enumerate(spec.features.aggregates):
        base = f"features.aggregates[{i}]"
        if agg.prefix in prefixes:
            errors.append((f"{base}.prefix", f"prefix {agg.prefix!r} is used by another aggregate block"))
        prefixes.add(agg.prefix)
        src = need_source(f"{base}.source", agg.source, "events")
        if src is None:
            continue
        for op in ("sum", "mean", "max"):
            for j, col in enumerate(getattr(agg, op)):
                need_column(f"{base}.{op}[{j}]", agg.source, src, col, NUMERIC_TYPES)
        for j, col in enumerate(agg.distinct):
            need_column(f"{base}.distinct[{j}]", agg.source, src, col)
        for col, values in agg.share.items():
            c = need_column(f"{base}.share.{col}", agg.source, src, col, ("string",))
            if c is not None and c.allowed is not None:
                unknown = [v for v in values if v not in c.allowed]
                if unknown:
                    errors.append((f"{base}.share.{col}", f"values {unknown} are not in the column's allowed set"))
        if agg.trend is not None:
            t = agg.trend
            if t.short not in agg.windows or t.long not in agg.windows or t.short >= t.long:
                errors.append(
                    (f"{base}.trend", f"short ({t.short}) and long ({t.long}) must be windows, short < long")
                )
    tr = spec.training
    names = [c.name for c in tr.candidates]
    if len(set(names)) != len(names):
        errors.append(("training.candidates", f"candidate names must be unique, got {names}"))
    if tr.baseline not in names:
        errors.append(("training.baseline", f"{tr.baseline!r} is not a candidate; candidates: {', '.join(names)}"))
    elif next(c for c in tr.candidates if c.name == tr.baseline).kind != "logistic_regression":
        errors.append(("training.baseline", "the baseline must be a logistic_regression candidate"))
    for i, cand in enumerate(tr.candidates):
        for param, space in cand.search.items():
            where = f"training.candidates[{i}].search.{param}"
            if space.choices is None and (space.low is None or space.high is None or space.low >= space.high):
                errors.append((where, "give choices, or low < high"))
            if space.log and space.low is not None and space.low <= 0:
                errors.append((where, "a log-scaled range needs low > 0"))
    for i, col in enumerate(tr.segments):
        if col not in spec.features.static:
            errors.append((f"training.segments[{i}]", f"{col!r} is not a static feature; static: {spec.features.static}"))
    from batchml.features import feature_columns

    known = feature_columns(spec)
    for i, col in enumerate(spec.scoring.columns):
        if col not in known:
            errors.append((f"scoring.columns[{i}]", f"{col!r} is not a feature column; features: {', '.join(known)}"))
    for src_name in spec.expectations.raw:
        if src_name not in sources:
            errors.append((f"expectations.raw.{src_name}", f"unknown source; declared: {', '.join(sorted(sources))}"))
    return errors


# Loading ---------------------------------------------------------------------------------------------------------


# pydantic puts the chosen member's tag into error locations of a discriminated union: (field, tag) -> model
_TAGGED: dict[tuple[str, str], type[BaseModel]] = {
    ("label", "event_within_horizon"): EventLabelSpec,
    ("label", "column"): ColumnLabelSpec,
    ("split", "time"): TimeSplitSpec,
    ("split", "random"): RandomSplitSpec,
}


def _is_tag(loc: tuple, i: int) -> bool:
    return i > 0 and (str(loc[i - 1]), str(loc[i])) in _TAGGED


def _dotted(loc: tuple) -> str:
    out = ""
    for part in (p for i, p in enumerate(loc) if not _is_tag(loc, i)):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _unwrap(tp: object) -> object:
    """Strip Optional/Union/Annotated down to the model or container inside."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The spec model found by following `loc` from the top, to list the valid keys after a typo."""
    current: object = UseCaseSpec
    for i, part in enumerate(loc):
        if _is_tag(loc, i):
            current = _TAGGED[(str(loc[i - 1]), str(part))]
            continue
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(err: dict) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = f"; valid keys: {', '.join(parent.model_fields)}" if parent else ""
        return f"{_dotted(loc)}: unknown key{valid}"
    if err["type"] == "missing":
        return f"{_dotted(loc)}: required field is missing"
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float | bool) else ""
    return f"{_dotted(loc)}: {err['msg']}{shown}"


def load_spec(path: str | Path) -> UseCaseSpec:
    """Read and validate one spec file. Raises SpecError naming the file, the field and the reason."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise SpecError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping with at least name, description, entity, ...")
    try:
        spec = UseCaseSpec.model_validate(data)
    except ValidationError as exc:
        details = "\n  ".join(_describe(e) for e in exc.errors())
        raise SpecError(f"{path}: invalid spec:\n  {details}") from None
    problems = _reference_errors(spec)
    if spec.name != path.stem:
        problems.insert(0, ("name", f"{spec.name!r} must equal the file name {path.stem!r}"))
    if problems:
        details = "\n  ".join(f"{where}: {why}" for where, why in problems)
        raise SpecError(f"{path}: invalid spec:\n  {details}")
    spec._path = path.resolve()
    spec._sha256 = hashlib.sha256(raw_bytes).hexdigest()
    return spec


def discover_specs(specs_dir: str | Path) -> list[UseCaseSpec]:
    """Load every `*.yaml` spec in a folder, sorted by name. Any bad spec raises (it never silently vanishes)."""
    folder = Path(specs_dir)
    if not folder.is_dir():
        raise SpecError(f"{folder}: specs folder not found; set BATCHML_SPECS_DIR to the folder holding *.yaml specs")
    specs = [load_spec(p) for p in sorted(folder.glob("*.yaml"))]
    # the landing zone is shared: a source name means the same files, so every spec must declare it alike
    declared: dict[str, UseCaseSpec] = {}
    for spec in specs:
        for name, src in spec.sources.items():
            other = declared.setdefault(name, spec)
            if other is not spec and (other.sources[name].kind, other.sources[name].columns) != (src.kind, src.columns):
                raise SpecError(
                    f"{spec.path}: sources.{name}: declared differently in {other.path}; source names are shared "
                    "by every use case in the landing zone, so rename one of them (or declare it identically)"
                )
    return specs


def get_spec(specs_dir: str | Path, name: str) -> UseCaseSpec:
    """Load the spec of one use case by name."""
    if not re.match(IDENTIFIER, name):
        raise SpecError(f"use case {name!r}: not a valid name (lower-case letters, digits, underscores)")
    path = Path(specs_dir) / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(Path(specs_dir).glob("*.yaml"))) or "none"
        raise SpecError(f"{path}: no spec for use case {name!r}; known use cases: {known}")
    return load_spec(path)
