"""Spec models of an *event* entity (issue 17): each row of an events source is scored as of its own timestamp, from
strictly earlier events of the same source, and its label is an outcome event that refers to it (a chargeback of a
transaction) within a horizon.

Every field's docstring is the reference; batchml.event_features computes what these models declare. The time rules
the names refer to, for an event at time `t` on day `D` (`D 00:00 UTC <= t < D+1`):

  hours windows   `[t - w hours, t)`, exact at the microsecond (a range window over event time);
  whole days      the `n` whole days before the event's day, `[D - n days, D)`, the same for every event of day D
                  (computed from day-granular aggregates, hence cheap); with "and the earlier events of its day" the
                  range is `[D - n days, t)`;
  strictly earlier `t' < t`: an event with exactly the same timestamp is never "earlier", in either direction, so
                  the features of tied events do not depend on the order rows happen to be in.

A history block reads the group's events of its longest range only (see `HistorySpec`), and the label rate reads
only labels that had matured before the event's day began (`EventOutcomeLabelSpec`, `LabelRateSpec`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from batchml.specs.base import ColumnName, FeatureKind, Identifier, Problem, SpecModel, words

MAX_DAYS = 366
"""Longest whole-day range a history block may read (usual, lookback, label rate): a year of events per run."""
HOUR_OF_DAY = "hour_of_day"
"""Name of the time-of-day feature (`EventFeaturesSpec.time_of_day`)."""


def _hours_name(w: int) -> str:
    return f"{w}h"


class EventEntitySpec(SpecModel):
    """An event entity: every row of an events source (e.g. a card transaction) is scored once, as of its own
    timestamp (the source's `timestamp`). The feature partition of date D holds one row per event of the day before
    (`[D - 1 day, D)` UTC), whose features come from strictly earlier events only (`features.history`)."""

    kind: Literal["event"]
    """`event`; a spec without `entity.kind` scores a population of entities as of a date instead."""
    key: ColumnName
    """Event id column of the source, declared `unique: true` (one feature row and one score per event)."""
    source: Identifier
    """The events source whose rows are scored, e.g. card_transactions."""

    @property
    def leaves_on(self) -> None:
        """An event never leaves a population: each day's population is that day's events."""
        return None


class UsualSpec(SpecModel):
    """The event's value against the group's usual values: the mean and standard deviation of `column` over the
    group's events of the `days` whole days before the event's day (`[D - days, D)`).

    Today's earlier events are left out on purpose: a burst (a stolen card's third purchase) must not dilute the
    baseline it is compared with, and the hour windows already describe today. Whole days also make it one
    aggregation per group and run (the same baseline for every event of the group that day), whatever `days` is.

    Features (prefix `p`, column `c`, days `d`): `p_c_ratio_dd` (value / mean; 1 when the group has no earlier value,
    a mean of 0, or the event's value is null), `p_c_zscore_dd` ((value - mean) / sample standard deviation; 0 with
    fewer than two earlier values, no spread, or a null value) and `p_count_dd` (how many earlier non-null values
    the baseline has: tells "usual" from "unknown").
    """

    column: ColumnName
    """Numeric column of the events source, e.g. amount."""
    days: int = Field(ge=1, le=MAX_DAYS)
    """Whole days before the event's day that make the baseline."""


class LabelRateSpec(SpecModel):
    """Smoothed rate of positive labels among the group's events whose labels had matured before the event's day
    began: events of the `days` whole days `[D - horizon - days, D - horizon)` (horizon: the label's `horizon_days`).

    An event at `t'` is labelled by outcome rows in `[t', t' + horizon)`; it is matured at `t' + horizon`. Every
    event of the window has `t' + horizon < D <= t`, so no label used here could still change, and no outcome row
    used arrived at or after `t` (it arrived before `t' + horizon`). Labels maturing during day D itself are left
    to the next day's run: the rate is the same for all events of a group on a day (day-granular, exact), at most
    one day staler than the newest matured label.

    Rate = (positives + prior * base) / (matured events + prior), where `base` is the positive rate of all groups
    over the same days (one number per run): a group with few matured events sits near the overall rate instead of
    at 0 or 1. Features (prefix `p`, days `d`): `p_label_rate_dd` (share) and `p_matured_dd` (the count of matured
    events the rate rests on).
    """

    days: int = Field(ge=1, le=MAX_DAYS)
    """Whole days of matured events, ending `horizon_days` before the event's day."""
    prior: float = Field(default=100.0, ge=0.0, le=1e9)
    """Weight of the overall rate, in events: 0 gives the raw rate (the overall rate when there is no event)."""


class HistorySpec(SpecModel):
    """Features of an event from strictly earlier events (`t' < t`) of the same source with the same value of
    `group_by` (e.g. the same card, or the same merchant).

    What is read per run (day D being scored): the events of day D; for each hours window `w`, the event-level
    rows of the one or two days that hold `t - w` for some `t` in D (e.g. D-1 for 1 h and 24 h, D-7 for 168 h);
    day-granular sums over the whole days in between (D-6..D-1 for 168 h) and over the whole days of `usual`,
    `lookback_days` (first_seen, since_previous) and the label rate. Every range is exact; only the ranges defined
    in whole days are aligned to midnight.
    """

    group_by: ColumnName
    """Column of the events source whose earlier events form the history, e.g. card_id."""
    prefix: Identifier
    """Prefix of every feature name of this block, e.g. `card` -> `card_count_24h`."""
    hours: list[int] = []
    """Range windows over event time, in hours: `[t - w hours, t)` (e.g. [1, 24, 168]). Exact to the microsecond:
    an event exactly `w` hours earlier is inside, one at `t` itself is not."""
    count: bool = True
    """`p_count_<w>h`: the group's earlier events in each window."""
    sum: list[ColumnName] = []
    """`p_sum_<column>_<w>h`: total of each numeric column over each window (0 when empty; nulls ignored)."""
    first_seen: list[ColumnName] = []
    """`p_first_<column>`: 1 when no earlier event of the group had the event's value of the column within the
    `lookback_days` whole days before the event's day and its earlier events that day (`[D - lookback, t)`), else
    0. A null value is a value like any other (null matches null)."""
    since_previous: bool = False
    """`p_hours_since_previous`: hours from the group's previous event (strictly earlier) to this one, looked for in
    `[D - lookback_days, t)`; `24 * (lookback_days + 1)` when there is none (longer than any value found)."""
    usual: UsualSpec | None = None
    """The event's value against the group's usual ones (ratio to the mean, z-score); see UsualSpec."""
    label_rate: LabelRateSpec | None = None
    """The group's smoothed rate of matured positive labels (needs the use case's event-outcome label, and the
    label source must carry `group_by`); see LabelRateSpec."""
    lookback_days: int = Field(default=7, ge=1, le=MAX_DAYS)
    """Whole days before the event's day searched by `first_seen` and `since_previous`; the longest hours window
    must fit in them (`max(hours) <= 24 * lookback_days`), so that one bound says how far back the block looks at
    single events."""

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: list[int]) -> list[int]:
        if any(w < 1 or w > 24 * MAX_DAYS for w in v):
            raise ValueError(f"every window must be between 1 and {24 * MAX_DAYS} hours")
        if len(set(v)) != len(v):
            raise ValueError("windows must not repeat")
        return sorted(v)

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        if (self.count or self.sum) and not self.hours:
            out.append(("hours", "count and sum need at least one window (hours)"))
        if self.hours and not (self.count or self.sum):
            out.append(("hours", "windows without count or sum produce no feature"))
        if self.hours and max(self.hours) > 24 * self.lookback_days:
            out.append(("hours", f"window {max(self.hours)} h is longer than lookback_days ({self.lookback_days} "
                                  f"days = {24 * self.lookback_days} h): raise lookback_days or shorten the window"))
        for name, cols in (("sum", self.sum), ("first_seen", self.first_seen)):
            if len(set(cols)) != len(cols):
                out.append((name, "columns must not repeat"))
        if self.group_by in self.first_seen:
            out.append(("first_seen", f"{self.group_by!r} is the group itself: every earlier event of the group has "
                                      "it; use since_previous"))
        if not self.feature_names():
            out.append(("", "this block produces no feature"))
        return out

    @property
    def days_back(self) -> int:
        """Whole days before the event's day this block reads (label rate apart: it also depends on the horizon)."""
        whole = [self.lookback_days] if (self.first_seen or self.since_previous) else []
        whole += [-(-w // 24) for w in self.hours]  # the day holding t - w is at most ceil(w / 24) days back
        if self.usual:
            whole.append(self.usual.days)
        return max(whole, default=0)

    def feature_names(self) -> dict[str, FeatureKind]:
        """The features this block produces, name -> kind, in table order."""
        p = self.prefix
        names: dict[str, FeatureKind] = {}
        for w in self.hours:
            if self.count:
                names[f"{p}_count_{_hours_name(w)}"] = "count"
            names.update({f"{p}_sum_{c}_{_hours_name(w)}": "amount" for c in self.sum})
        names.update({f"{p}_first_{c}": "share" for c in self.first_seen})
        if self.since_previous:
            names[f"{p}_hours_since_previous"] = "days"  # a duration (>= 0); the name carries the unit
        if self.usual:
            c, d = self.usual.column, self.usual.days
            names[f"{p}_{c}_ratio_{d}d"] = "ratio"
            names[f"{p}_{c}_zscore_{d}d"] = "numeric"
            names[f"{p}_count_{d}d"] = "count"
        if self.label_rate:
            d = self.label_rate.days
            names[f"{p}_label_rate_{d}d"] = "share"
            names[f"{p}_matured_{d}d"] = "count"
        return names

    def feature_descriptions(self) -> dict[str, str]:
        """Plain words for each feature of this block (for reason codes), generated from its definition."""
        p, g = self.prefix, words(self.group_by)
        out: dict[str, str] = {}
        for w in self.hours:
            last = f"in the {w} hours before" if w > 1 else "in the hour before"
            if self.count:
                out[f"{p}_count_{_hours_name(w)}"] = f"earlier events of the same {g} {last}"
            out.update({f"{p}_sum_{c}_{_hours_name(w)}": f"total {words(c)} of the same {g} {last}" for c in self.sum})
        out.update({f"{p}_first_{c}": f"first {words(c)} for this {g} in {self.lookback_days} days"
                    for c in self.first_seen})
        if self.since_previous:
            out[f"{p}_hours_since_previous"] = (f"hours since the previous event of the same {g} (none in "
                                                f"{self.lookback_days} days: {24 * (self.lookback_days + 1)})")
        if self.usual:
            c, d = self.usual.column, self.usual.days
            out[f"{p}_{c}_ratio_{d}d"] = f"{words(c)} relative to this {g}'s average over {d} days"
            out[f"{p}_{c}_zscore_{d}d"] = f"{words(c)} in standard deviations from this {g}'s average over {d} days"
            out[f"{p}_count_{d}d"] = f"events of this {g} in the {d} days before"
        if self.label_rate:
            d = self.label_rate.days
            out[f"{p}_label_rate_{d}d"] = f"share of this {g}'s matured events labelled positive ({d} days)"
            out[f"{p}_matured_{d}d"] = f"matured events of this {g} the rate rests on ({d} days)"
        return out


class EventFeaturesSpec(SpecModel):
    """Features of an event entity: the event's own columns, its history blocks and its time of day.

    One row per event of the day being scored; see HistorySpec for the point-in-time rule of each block.
    """

    static: list[ColumnName] = []
    """Categorical columns of the event itself, copied as they are (e.g. channel, entry_mode, merchant_category)."""
    numeric: list[ColumnName] = []
    """Numeric columns of the event itself, as doubles (e.g. amount)."""
    history: list[HistorySpec] = []
    """One block per group (card, merchant, ...)."""
    time_of_day: bool = False
    """`hour_of_day`: the event's hour in UTC as a fraction (13.5 = 13:30), in [0, 24)."""

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        overlap = set(self.static) & set(self.numeric)
        if overlap:
            out.append(("numeric", f"{sorted(overlap)} are also static (categorical) features"))
        seen: dict[str, str] = {c: "static" for c in self.static}
        seen.update({c: "numeric" for c in self.numeric})
        if self.time_of_day:
            if HOUR_OF_DAY in seen:
                out.append(("time_of_day", f"{HOUR_OF_DAY!r} is also a {seen[HOUR_OF_DAY]} column"))
            seen[HOUR_OF_DAY] = "time_of_day"
        prefixes: set[str] = set()
        for i, block in enumerate(self.history):
            if block.prefix in prefixes:
                out.append((f"history[{i}].prefix", f"prefix {block.prefix!r} is used by another history block"))
            prefixes.add(block.prefix)
            for name in block.feature_names():
                if name in seen:
                    out.append((f"history[{i}]", f"feature {name!r} is also produced by {seen[name]}"))
                seen[name] = f"history[{i}]"
        return out

    def feature_names(self) -> dict[str, FeatureKind]:
        """Every feature, name -> kind, in table order: static, numeric, history blocks, hour_of_day."""
        names: dict[str, FeatureKind] = {c: "categorical" for c in self.static}
        names.update({c: "numeric" for c in self.numeric})
        for block in self.history:
            names.update(block.feature_names())
        if self.time_of_day:
            names[HOUR_OF_DAY] = "numeric"
        return names

    def feature_descriptions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for block in self.history:
            out.update(block.feature_descriptions())
        if self.time_of_day:
            out[HOUR_OF_DAY] = "hour of the day (UTC)"
        return out

    @property
    def label_rate_blocks(self) -> list[HistorySpec]:
        return [b for b in self.history if b.label_rate is not None]


LabelValue = str | int | bool


class EventOutcomeLabelSpec(SpecModel):
    """Binary label of an event entity: 1 when a row of `source` (e.g. chargebacks) that refers to the event
    (`key`) and matches `where` has its timestamp in `[t, t + horizon_days)`, t being the event's time; else 0.

    The label of an event at `t` is known (matured) at `t + horizon_days`: training uses an event only once that
    has passed, and the label rate feature only labels matured before the scored event's day. Outcome rows after
    the horizon do not count (a late chargeback is not a positive): the label is the same whenever it is read
    after maturity.
    """

    kind: Literal["event_outcome"] = "event_outcome"
    """`event_outcome`, the default label kind of an event entity (and the only one it accepts)."""
    name: Identifier
    """Label name, e.g. fraud_chargeback."""
    source: Identifier
    """Events source of the outcome rows, e.g. chargebacks (its own timestamp: when the outcome happened)."""
    key: ColumnName
    """Column of `source` holding the scored event's key, e.g. transaction_id."""
    event_timestamp: ColumnName
    """Column of `source` holding the scored event's time, e.g. transaction_ts. The label rate needs it to tell
    matured labels without joining back to the events (chargeback feeds carry the transaction date)."""
    where: dict[ColumnName, list[LabelValue]] = {}
    """Only outcome rows whose column values are in these lists count (all columns must match), e.g.
    {reason: [fraud_card_present, fraud_card_not_present]}. Empty: every row."""
    horizon_days: int = Field(ge=1, le=3650)
    """Days after the event within which an outcome row makes it positive, and after which its label is final."""

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        for col, values in self.where.items():
            if not values:
                out.append((f"where.{col}", "list the values that count (an empty list would match nothing)"))
        if self.key == self.event_timestamp:
            out.append(("event_timestamp", "must be another column than key"))
        return out
