"""A use case: one model, its data and its pipelines, and the checks that tie its parts together (every name that
refers to a declared source, column or feature must exist)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

import batchml.specs.events as ev
from batchml.specs.base import Identifier, Problem, SpecModel, raise_problems
from batchml.specs.data import (
    NUMERIC_TYPES,
    AnyEntitySpec,
    ColumnLabelSpec,
    ColumnSpec,
    EventLabelSpec,
    ExpectationsSpec,
    FeatureKind,
    FeaturesSpec,
    LabelSpec,
    SourceSpec,
)
from batchml.specs.stages import MonitoringSpec, RandomSplitSpec, ScoringSpec, TrainingSpec, WaitSpec

AS_OF_COLUMN = "as_of_date"
"""Column of every feature table (and score table) holding the date the row is for."""
MAX_SCORE_TABLE = 63 - len("_s20260101_0123abcd")
"""Longest score table name: PostgreSQL identifiers have 63 characters, and staging tables append a date and hash."""


class CardSpec(SpecModel):
    """What the model card says about the model's use, beside the figures: who may use it for what, what it must
    not be used for, what it cannot do, and whom to ask. Shown at the top of every model card."""

    intended_use: str | None = None
    """What the scores are for and who acts on them."""
    out_of_scope: list[str] = []
    """Uses the model was not built or checked for."""
    limitations: list[str] = []
    """Known weaknesses: data coverage, label definition, groups it may serve worse."""
    contact: str | None = None
    """Whom to ask about the model (a team, a channel, an address); the spec's `owner` is shown next to it."""


class UseCaseSpec(SpecModel):
    """One use case: one model, its data, its pipelines."""

    name: Identifier
    """Use-case id: prefixes DAG ids (`<name>__features`), paths and tables. Must equal the file name."""
    description: str = Field(min_length=1)
    owner: str = "ml-platform"
    tags: list[str] = []
    start_date: dt.date = dt.date(2026, 1, 1)
    """First logical date the scheduled DAGs cover."""
    max_key_length: int = Field(default=256, ge=1, le=1_000_000)
    """Longest value of a key column (the entity key, and every column declared unique) unless the column sets its
    own `max_length`: a runaway value (a whole file in one field) fails the raw check instead of being published."""
    entity: AnyEntitySpec
    """Who is scored: a population of entities as of each date, or (`kind: event`) each event of a source as of
    its own time."""
    sources: dict[Identifier, SourceSpec] = Field(min_length=1)
    label: LabelSpec
    features: FeaturesSpec
    expectations: ExpectationsSpec = ExpectationsSpec()
    training: TrainingSpec = TrainingSpec()
    scoring: ScoringSpec = ScoringSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    wait: WaitSpec = WaitSpec()
    """How scheduled runs wait for data that has not landed yet."""
    card: CardSpec = CardSpec()
    """Intended and out-of-scope use, limitations and contact, for the model card."""

    _path: Path | None = PrivateAttr(default=None)
    _sha256: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _event_defaults(cls, data):
        # Defaults that depend on the entity's kind. An event entity: `features.tenure` is false (an event has no
        # tenure; an explicit `tenure: true` still reaches the checks and is refused with its reason) and a label
        # without `kind` is an event_outcome label (the only kind it can have), so that a forgotten kind is not
        # reported as every field of another kind's label being unknown.
        if not isinstance(data, dict) or not isinstance(data.get("entity"), dict) \
                or data["entity"].get("kind") != "event":
            return data
        features, label = data.get("features"), data.get("label")
        if isinstance(features, dict) and "tenure" not in features:
            data = {**data, "features": {**features, "tenure": False}}
        if isinstance(label, dict) and "kind" not in label:
            data = {**data, "label": {**label, "kind": "event_outcome"}}
        return data

    # Derived names ---------------------------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """File the spec was read from."""
        return self._path

    @property
    def sha256(self) -> str:
        """Content hash of the spec file, recorded as lineage."""
        return self._sha256

    def dag_id(self, kind: str) -> str:
        return f"{self.name}__{kind}"

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
    def is_event(self) -> bool:
        """Whether each event of the entity source is scored as of its own time (`entity.kind: event`)."""
        return isinstance(self.entity, ev.EventEntitySpec)

    @property
    def event_timestamp(self) -> str | None:
        """Event entity: the column holding each event's time (its source's timestamp), a column of the feature
        table beside the key; None for a population."""
        src = self.sources.get(self.entity.source)
        return src.timestamp if self.is_event and src is not None else None

    @property
    def horizon_days(self) -> int:
        """Days after a snapshot (or, for an event entity, after the event) until its label is known: 0 for a label
        column of the snapshot itself."""
        return self.label.horizon_days if isinstance(self.label, EventLabelSpec | ev.EventOutcomeLabelSpec) else 0

    @property
    def lookback_days(self) -> int:
        """Days of events the feature job reads before the as-of date (an event entity: before the scored day,
        including the label rate's matured days, which end `horizon_days` before it)."""
        if self.is_event:
            days = [b.days_back for b in self.features.history]
            days += [self.horizon_days + b.label_rate.days for b in self.features.history if b.label_rate]
            return max(days, default=0)
        return max((w for a in self.features.aggregates for w in a.windows), default=0)

    @property
    def event_features(self) -> ev.EventFeaturesSpec:
        """Event entity: the features as batchml.event_features computes them."""
        f = self.features
        return ev.EventFeaturesSpec(static=f.static, numeric=f.numeric, history=f.history, time_of_day=f.time_of_day)

    def feature_columns(self) -> dict[str, FeatureKind]:
        """Feature names -> kind (`categorical`, `numeric`, `count`, `amount`, `share`, `days`, `ratio`), in the
        order of the feature table."""
        feats = self.features
        cols: dict[str, FeatureKind] = {c: "categorical" for c in feats.static}
        cols.update({c: "numeric" for c in feats.numeric})
        cols.update(feats.indicator_columns())
        if feats.tenure:
            cols["tenure_days"] = "days"
        for agg in feats.aggregates:
            cols.update(agg.feature_names())
        for block in feats.history:
            cols.update(block.feature_names())
        if feats.time_of_day:
            cols[ev.HOUR_OF_DAY] = "numeric"
        if feats.custom:
            cols.update(feats.custom.columns)
        return cols

    def max_length(self, source: str, column: str) -> int | None:
        """The longest string allowed in a column: its own `max_length`, or `max_key_length` for a key column."""
        col = self.sources[source].columns[column]
        if col.type != "string":
            return None
        if col.max_length is not None:
            return col.max_length
        return self.max_key_length if (column == self.entity.key or col.unique) else None

    def sources_read(self) -> list[str]:
        """Sources the feature job reads: the entity source, the leaving events, every aggregated source (an event
        entity: its events source, and the label's source when a history block has a label rate)."""
        names = [self.entity.source]
        if self.entity.leaves_on:
            names.append(self.entity.leaves_on)
        names += [a.source for a in self.features.aggregates]
        if self.is_event and any(b.label_rate for b in self.features.history):
            names.append(self.label.source)
        return list(dict.fromkeys(names))

    # Checks across sections --------------------------------------------------------------------------------------
    @model_validator(mode="after")
    def _whole_spec(self, info: ValidationInfo):
        if (info.context or {}).get("collect_problems"):
            raise_problems(self.all_problems())
        return self

    def problems(self) -> list[Problem]:
        return [*self._source_problems(), *self._entity_problems(), *self._label_problems(),
                *self._aggregate_problems(), *self._stage_problems()]

    def _source(self, path: str, name: str | None, *kinds: str, out: list[Problem]) -> SourceSpec | None:
        if name is None:
            return None
        src = self.sources.get(name)
        if src is None:
            out.append((path, f"unknown source {name!r}; declared sources: {', '.join(sorted(self.sources))}"))
        elif src.kind not in kinds:
            out.append((path, f"source {name!r} is of kind {src.kind!r}, expected {' or '.join(map(repr, kinds))}"))
            return None
        return src

    @staticmethod
    def _column(path: str, src_name: str, src: SourceSpec, column: str, out: list[Problem],
                types: tuple[str, ...] | None = None) -> ColumnSpec | None:
        col = src.columns.get(column)
        if col is None:
            out.append((path, f"{column!r} is not a column of source {src_name!r}; columns: {', '.join(src.columns)}"))
        elif types and col.type not in types:
            out.append((path, f"column {column!r} of {src_name!r} has type {col.type!r}; expected one of {types}"))
        return col

    def _source_problems(self) -> list[Problem]:
        out: list[Problem] = []
        for name, src in self.sources.items():
            if src.kind == "events" and not self.is_event:  # events of a population refer to its entities
                self._column(f"sources.{name}.columns", name, src, self.entity.key, out)
        for src_name in self.expectations.raw:
            if src_name not in self.sources:
                out.append((f"expectations.raw.{src_name}",
                            f"unknown source; declared: {', '.join(sorted(self.sources))}"))
        return out

    def _entity_problems(self) -> list[Problem]:
        out: list[Problem] = []
        kinds = ("events",) if self.is_event else ("entity", "snapshot")
        ent = self._source("entity.source", self.entity.source, *kinds, out=out)
        self._source("entity.leaves_on", self.entity.leaves_on, "events", out=out)
        feats = self.features
        if ent is None:
            return out
        name = self.entity.source
        self._column("entity.key", name, ent, self.entity.key, out)
        for i, col in enumerate(feats.static):
            self._column(f"features.static[{i}]", name, ent, col, out)
        for i, col in enumerate(feats.numeric):
            self._column(f"features.numeric[{i}]", name, ent, col, out, NUMERIC_TYPES)
        if feats.tenure and ent.timestamp is None:
            out.append(("features.tenure", f"source {name!r} has no timestamp to count tenure from; set tenure: "
                                           "false (or copy a tenure column via numeric)"))
        if ent.kind == "snapshot" and self.entity.leaves_on:
            out.append(("entity.leaves_on", "a snapshot source is the population itself; remove leaves_on"))
        if self.is_event:
            out += self._event_entity_problems(ent)
        else:
            if feats.history:
                out.append(("features.history", "history blocks describe each event of an event entity (entity.kind: "
                                                "event); a population of entities uses features.aggregates"))
            if feats.time_of_day:
                out.append(("features.time_of_day", "the time of day is an event's (entity.kind: event); a population "
                                                    "is scored as of midnight"))
        return out

    def _event_entity_problems(self, ent: SourceSpec) -> list[Problem]:
        """An event entity: what its features may use, and the columns every history block names."""
        out: list[Problem] = []
        name, feats, label = self.entity.source, self.features, self.label
        key = ent.columns.get(self.entity.key)
        if key is not None and not key.unique:
            out.append(("entity.key", f"column {self.entity.key!r} of {name!r} must be declared unique: true (one "
                                      "feature row and one score per event)"))
        if feats.tenure:
            out.append(("features.tenure", "an event has no tenure: remove tenure (history blocks' since_previous "
                                           "measure the time since the group's previous event)"))
        if feats.aggregates:
            out.append(("features.aggregates", "aggregates are per entity as of a date; an event entity uses "
                                               "features.history (strictly earlier events of the same group)"))
        if feats.custom:
            out.append(("features.custom", "custom feature functions are not supported for an event entity yet"))
        if feats.fill:
            out.append(("features.fill", "filling nulls is not supported for an event entity yet: declare the "
                                         "column non-nullable, or use it in first_seen (null is a value there)"))
        for field in ("static", "numeric"):
            for i, col in enumerate(getattr(feats, field)):
                if col in ent.columns and ent.columns[col].nullable:
                    out.append((f"features.{field}[{i}]", f"column {col!r} of {name!r} is nullable and an event "
                                f"entity cannot fill it (the feature check refuses nulls): use it in a history "
                                "block's first_seen, or declare it non-nullable"))
        for b, block in enumerate(feats.history):
            base = f"features.history[{b}]"
            self._column(f"{base}.group_by", name, ent, block.group_by, out)
            for i, col in enumerate(block.sum):
                self._column(f"{base}.sum[{i}]", name, ent, col, out, NUMERIC_TYPES)
            for i, col in enumerate(block.first_seen):
                self._column(f"{base}.first_seen[{i}]", name, ent, col, out)
            if block.usual:
                self._column(f"{base}.usual.column", name, ent, block.usual.column, out, NUMERIC_TYPES)
            if block.label_rate is None:
                continue
            if not isinstance(label, ev.EventOutcomeLabelSpec):
                out.append((f"{base}.label_rate", "needs an event_outcome label (label.kind: event_outcome)"))
            elif label.source in self.sources:
                self._column(f"{base}.label_rate", label.source, self.sources[label.source], block.group_by, out)
        return out

    def _label_problems(self) -> list[Problem]:
        out: list[Problem] = []
        label, split, feats = self.label, self.training.split, self.features
        if isinstance(label, ev.EventOutcomeLabelSpec) or self.is_event:
            return self._outcome_label_problems()
        if isinstance(label, ColumnLabelSpec):
            ent = self.sources.get(self.entity.source)
            if ent is not None and ent.kind != "snapshot":
                out.append(("label.kind", "a column label needs a snapshot entity source (sources.*.kind: snapshot)"))
            elif ent is not None:
                col = self._column("label.column", self.entity.source, ent, label.column, out)
                if col is not None and col.allowed is not None and str(label.positive) not in col.allowed:
                    out.append(("label.positive", f"{label.positive!r} is not in the column's allowed {col.allowed}"))
                if col is not None and col.allowed is not None and len(col.allowed) != 2:
                    out.append(("label.column", f"a binary label needs exactly two allowed values, got {col.allowed}"))
            if label.column in feats.static or label.column in feats.numeric or label.column == self.entity.key:
                out.append(("label.column", f"{label.column!r} is also a feature or the key: the label would leak"))
            if not isinstance(split, RandomSplitSpec):
                out.append(("training.split", "a column label has no time axis: use {kind: random, ...}"))
        else:
            self._source("label.source", label.source, "events", out=out)
            if isinstance(split, RandomSplitSpec):
                out.append(("training.split", "an event label is split by time: remove kind: random"))
        return out

    def _outcome_label_problems(self) -> list[Problem]:
        """The label of an event entity: outcome rows of another events source referring to the scored event."""
        label = self.label
        if not self.is_event:
            return [("label.kind", "an event_outcome label labels each event of an event entity: set entity.kind: "
                                   "event, or use the default label kind (event_within_horizon)")]
        if not isinstance(label, ev.EventOutcomeLabelSpec):
            return [("label.kind", f"an event entity needs an event_outcome label ({{kind: event_outcome, name, "
                                   f"source, key, event_timestamp, horizon_days}}), not {label.kind!r}")]
        out: list[Problem] = []
        if isinstance(self.training.split, RandomSplitSpec):
            out.append(("training.split", "an event label is split by time: remove kind: random"))
        if label.source == self.entity.source:
            out.append(("label.source", "the outcome rows must come from another source than the scored events"))
        src = self._source("label.source", label.source, "events", out=out)
        if src is None:
            return out
        key = self._column("label.key", label.source, src, label.key, out)
        event_key = self.entity_source.columns.get(self.entity.key) if self.entity.source in self.sources else None
        if key is not None and event_key is not None and key.type != event_key.type:
            out.append(("label.key", f"column {label.key!r} of {label.source!r} has type {key.type!r}; the event key "
                                     f"{self.entity.key!r} has type {event_key.type!r}"))
        self._column("label.event_timestamp", label.source, src, label.event_timestamp, out, ("timestamp",))
        if label.event_timestamp == src.timestamp:
            out.append(("label.event_timestamp", f"{label.event_timestamp!r} is the outcome's own time (the source's "
                                                 "timestamp); name the column holding the scored event's time"))
        for col, values in label.where.items():
            c = self._column(f"label.where.{col}", label.source, src, col, out)
            if c is not None and c.allowed is not None:
                unknown = [v for v in values if str(v) not in c.allowed]
                if unknown:
                    out.append((f"label.where.{col}", f"values {unknown} are not in the column's allowed {c.allowed}"))
        return out

    def _aggregate_problems(self) -> list[Problem]:
        out: list[Problem] = []
        for i, agg in enumerate(self.features.aggregates):
            base = f"features.aggregates[{i}]"
            src = self._source(f"{base}.source", agg.source, "events", out=out)
            if src is None:
                continue
            for op in ("sum", "mean", "max"):
                for j, col in enumerate(getattr(agg, op)):
                    self._column(f"{base}.{op}[{j}]", agg.source, src, col, out, NUMERIC_TYPES)
            for j, col in enumerate(agg.distinct):
                self._column(f"{base}.distinct[{j}]", agg.source, src, col, out)
            for col, values in agg.share.items():
                c = self._column(f"{base}.share.{col}", agg.source, src, col, out, ("string",))
                if c is not None and c.allowed is not None:
                    unknown = [v for v in values if v not in c.allowed]
                    if unknown:
                        out.append((f"{base}.share.{col}", f"values {unknown} are not in the column's allowed set"))
        return out

    def _expectation_problems(self) -> list[Problem]:
        """Every column an extra expectation names must exist where it runs (raw source or feature table)."""
        out: list[Problem] = []
        features = [self.entity.key, AS_OF_COLUMN, *([self.event_timestamp] if self.event_timestamp else []),
                    *self.feature_columns()]
        where = [(f"expectations.features[{i}]", e, features) for i, e in enumerate(self.expectations.features)]
        for src_name, expectations in self.expectations.raw.items():
            if src_name in self.sources:
                columns = list(self.sources[src_name].columns)
                where += [(f"expectations.raw.{src_name}[{i}]", e, columns) for i, e in enumerate(expectations)]
        for path, expectation, columns in where:
            for arg in ("column", "column_A", "column_B", "column_list", "column_set"):
                value = expectation.kwargs.get(arg)
                named = value if isinstance(value, list) else [value] if isinstance(value, str) else []
                unknown = [c for c in named if c not in columns] if arg != "column_set" else []
                if unknown:
                    out.append((f"{path}.kwargs.{arg}", f"{unknown} not among the columns it is checked on: "
                                                        f"{', '.join(columns)}"))
        return out

    def _stage_problems(self) -> list[Problem]:
        out: list[Problem] = self._expectation_problems()
        for col, value in self.features.fill.items():
            allowed = self.entity_source.columns[col].allowed if col in self.features.static and \
                self.entity.source in self.sources and col in self.entity_source.columns else None
            if allowed is not None and value not in allowed:
                out.append((f"features.fill.{col}", f"{value!r} is not in the column's allowed values {allowed}: "
                                                    "the feature check would refuse every filled row"))
        table_path = "scoring.table" if self.scoring.table else "name"
        if len(self.score_table) > MAX_SCORE_TABLE:
            out.append((table_path, f"the score table name {self.score_table!r} has {len(self.score_table)} "
                                    f"characters; at most {MAX_SCORE_TABLE} fit a PostgreSQL identifier once the "
                                    "staging and partition suffixes are added (set scoring.table to a shorter name)"))
        if len(self.monitoring_table) > MAX_SCORE_TABLE:
            out.append(("monitoring.table" if self.monitoring.table else "name",
                        f"the monitoring table name {self.monitoring_table!r} is longer than {MAX_SCORE_TABLE}"))
        out += self._fairness_problems()
        static = self.features.static
        for i, col in enumerate(self.training.segments):
            if col not in static:
                out.append((f"training.segments[{i}]", f"{col!r} is not a static feature; static: {static}"))
        known = self.feature_columns()
        for name, rule in self.training.rules.items():
            base = f"training.rules.{name}"
            numeric = [(f"{base}.{op}.{c}", c) for op in ("above", "below") for c in getattr(rule, op)]
            numeric += [(f"{base}.rank_by", rule.rank_by)] if rule.rank_by else []
            for path, col in [*numeric, *((f"{base}.equals.{c}", c) for c in rule.equals)]:
                if col not in known:
                    out.append((path, f"{col!r} is not a feature column; features: {', '.join(known)}"))
                elif known[col] == "categorical" and (path, col) in numeric:
                    out.append((path, f"{col!r} is categorical: compare it with equals"))
        for i, col in enumerate(self.scoring.columns):
            if col not in known:
                out.append((f"scoring.columns[{i}]", f"{col!r} is not a feature column; features: {', '.join(known)}"))
        return out

    def _fairness_problems(self) -> list[Problem]:
        out: list[Problem] = []
        fairness, known = self.training.fairness, self.feature_columns()
        for i, col in enumerate(fairness.attributes):
            if known.get(col) not in ("categorical", "numeric"):
                out.append((f"training.fairness.attributes[{i}]", f"{col!r} is not a static or numeric feature "
                            f"(a sensitive attribute is read from the test rows); features: {', '.join(known)}"))
        if fairness.flag_band is not None and fairness.flag_band not in self.scoring.bands:
            out.append(("training.fairness.flag_band", f"{fairness.flag_band!r} is not a band of scoring.bands "
                                                       f"({', '.join(self.scoring.bands)})"))
        return out
