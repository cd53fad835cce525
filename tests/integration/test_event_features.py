"""Point-in-time features of an event entity (batchml.event_features, issue 17) on a real local Spark session:
values against an independent pandas calculation (by the definitions in batchml.specs.events, event by event, no
prefix sums), a later, inserted or shifted event never changes an earlier event's features, and the label rate never
uses a label that had not matured."""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batchml import event_features
from batchml.event_features import EventSource, build_event_features
from batchml.specs import EventFeaturesSpec, EventOutcomeLabelSpec, HistorySpec, LabelRateSpec, UsualSpec
from batchml.storage import Landing, day_range

pytestmark = pytest.mark.spark

D = dt.date(2026, 3, 10)
"""The scored day: a run as of D + 1 scores the events of `[D, D + 1)`."""
AS_OF = D + dt.timedelta(days=1)
DAY0 = pd.Timestamp(D.isoformat(), tz="UTC")
HOUR = pd.Timedelta(hours=1)
DAYS = pd.Timedelta(days=1)
HORIZON = 3
FIRST, LAST = D - dt.timedelta(days=14), AS_OF + dt.timedelta(days=1)  # every partition the tests land

EVENTS = EventSource("txns", "event_ts")
OUTCOMES = EventSource("cbs", "cb_ts")
EVENT_SCHEMA = pa.schema([("transaction_id", pa.string()), ("card_id", pa.string()), ("merchant_id", pa.string()),
                          ("event_ts", pa.timestamp("us", tz="UTC")), ("amount", pa.float64()),
                          ("channel", pa.string()), ("device_id", pa.string())])
OUTCOME_SCHEMA = pa.schema([("cb_id", pa.string()), ("transaction_id", pa.string()),
                            ("transaction_ts", pa.timestamp("us", tz="UTC")), ("merchant_id", pa.string()),
                            ("cb_ts", pa.timestamp("us", tz="UTC")), ("reason", pa.string())])
LABEL = EventOutcomeLabelSpec(name="fraud", source="cbs", key="transaction_id", event_timestamp="transaction_ts",
                              where={"reason": ["fraud"]}, horizon_days=HORIZON)
FEATURES = EventFeaturesSpec(
    static=["channel"],
    numeric=["amount"],
    time_of_day=True,
    history=[
        # 50 h: a window of whole days (D-1) plus event-level rows (D-3 2:00 .. D-2), besides 1 h and 24 h
        HistorySpec(group_by="card_id", prefix="card", hours=[1, 24, 50], sum=["amount"],
                    first_seen=["merchant_id", "channel", "device_id"], since_previous=True, lookback_days=3,
                    usual=UsualSpec(column="amount", days=4)),
        HistorySpec(group_by="merchant_id", prefix="merchant", hours=[2], label_rate=LabelRateSpec(days=5, prior=2.0)),
    ],
)


# Data --------------------------------------------------------------------------------------------------------------


def _land(root: Path, events: pd.DataFrame, outcomes: pd.DataFrame) -> Path:
    """Events in the partition of their event day, outcomes in that of their own time; every day of
    FIRST..LAST gets a file (an empty one if need be), as the raw check requires."""
    landing = Landing(str(root))
    for source, df, ts, schema in (("txns", events, "event_ts", EVENT_SCHEMA), ("cbs", outcomes, "cb_ts",
                                                                                OUTCOME_SCHEMA)):
        df = _typed(df, schema)
        day_of = df[ts].dt.date
        for day in day_range(FIRST, LAST):
            part = df[day_of == day].sort_values(ts, kind="stable")
            landing.write_partition_file(source, day, "part-0.parquet",
                                         pa.Table.from_pandas(part, schema=schema, preserve_index=False))
    return root


def _typed(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """The columns of `schema`, timestamps as microseconds in UTC."""
    df = df[schema.names].copy()
    for f in schema:
        if pa.types.is_timestamp(f.type):
            df[f.name] = pd.to_datetime(df[f.name], utc=True).astype("datetime64[us, UTC]")
    return df


def _random_events(seed: int, scored: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded events of 12 cards and 8 merchants over D-13..D+1 on a 15-minute grid (so that ties and events
    exactly a window's length apart are common), with null amounts and devices, cards that always spend the same
    amount, and fraud and non-fraud chargebacks from 0 to 6 days after the transaction."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in day_range(D - dt.timedelta(days=13), AS_OF):
        n = scored if day == D else int(rng.integers(40, 90))
        slots = rng.integers(0, 96, n)
        cards = rng.integers(0, 12, n)
        for i in range(n):
            card = int(cards[i])
            device = (None if rng.random() < 0.15 else f"x{rng.integers(0, 90)}" if rng.random() < 0.35
                      else f"d{card}_{rng.integers(0, 3)}")
            amount = (9.99 if card < 2 else None if rng.random() < 0.03
                      else float(np.round(rng.lognormal(3, 1), 2)))
            rows.append({"card_id": f"c{card}", "merchant_id": f"m{rng.integers(0, 8)}",
                         "event_ts": pd.Timestamp(day.isoformat(), tz="UTC") + int(slots[i]) * pd.Timedelta(minutes=15),
                         "amount": amount, "channel": str(rng.choice(["pos", "online", "atm"])), "device_id": device})
    events = pd.DataFrame(rows).sort_values("event_ts", kind="stable").reset_index(drop=True)
    events.insert(0, "transaction_id", [f"t{seed}_{i:05d}" for i in range(len(events))])
    events = _typed(events, EVENT_SCHEMA)
    return events, _random_outcomes(events, rng)


def _random_outcomes(events: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    charged = events[rng.random(len(events)) < 0.2].reset_index(drop=True)
    delay = pd.Series(pd.to_timedelta(rng.integers(0, 6 * 96, len(charged)) * 15, unit="min"))
    out = pd.DataFrame({
        "cb_id": "cb_" + charged.transaction_id, "transaction_id": charged.transaction_id,
        "transaction_ts": charged.event_ts, "merchant_id": charged.merchant_id, "cb_ts": charged.event_ts + delay,
        "reason": rng.choice(["fraud", "fraud", "fraud", "dispute"], len(charged)),
    })
    return _typed(out, OUTCOME_SCHEMA)


# The reference: each feature by its definition, one event at a time -------------------------------------------------


def _same(values: pd.Series, value) -> pd.Series:
    """`values == value`, null matching null (first_seen treats null as a value)."""
    return values.isna() if value is None or (isinstance(value, float) and np.isnan(value)) else values == value


def reference(events: pd.DataFrame, outcomes: pd.DataFrame, features: EventFeaturesSpec = FEATURES,
              label: EventOutcomeLabelSpec = LABEL) -> pd.DataFrame:
    """The feature table of the events of D, computed from the definitions in batchml.specs.events with plain
    pandas filters: windows `[t - w, t)`, whole days `[D - n, D)`, `[D - lookback, t)`, matured labels."""
    ev = events[events.event_ts < DAY0 + DAYS]  # nothing at or after the as-of instant
    scored = ev[ev.event_ts >= DAY0]
    horizon = pd.Timedelta(days=label.horizon_days)
    wanted = outcomes[outcomes.reason.isin(label.where["reason"])]
    rows = []
    for _, e in scored.iterrows():
        t = e.event_ts
        row = {"transaction_id": e.transaction_id, "as_of_date": AS_OF, "event_ts": t}
        row.update({c: e[c] for c in features.static})
        row.update({c: float(e[c]) if e[c] is not None else np.nan for c in features.numeric})
        for b in features.history:
            group = ev[ev[b.group_by] == e[b.group_by]]
            earlier = group[group.event_ts < t]
            for w in b.hours:
                win = earlier[earlier.event_ts >= t - w * HOUR]
                if b.count:
                    row[f"{b.prefix}_count_{w}h"] = len(win)
                for c in b.sum:
                    row[f"{b.prefix}_sum_{c}_{w}h"] = float(win[c].sum())
            look = earlier[earlier.event_ts >= DAY0 - b.lookback_days * DAYS]
            for c in b.first_seen:
                row[f"{b.prefix}_first_{c}"] = 0 if _same(look[c], e[c]).any() else 1
            if b.since_previous:
                cap = 24.0 * (b.lookback_days + 1)
                row[f"{b.prefix}_hours_since_previous"] = (
                    min((t - look.event_ts.max()) / HOUR, cap) if len(look) else cap)
            if b.usual:
                c, d = b.usual.column, b.usual.days
                u = group[(group.event_ts >= DAY0 - d * DAYS) & (group.event_ts < DAY0)][c].dropna().tolist()
                x, known = e[c], not pd.isna(e[c])
                # exactly rounded (the statistics module sums exactly): identical amounts have no spread at all
                mean = statistics.fmean(u) if u else np.nan
                std = statistics.stdev(u) if len(u) > 1 else 0.0
                row[f"{b.prefix}_{c}_ratio_{d}d"] = x / mean if len(u) and mean > 0 and known else 1.0
                row[f"{b.prefix}_{c}_zscore_{d}d"] = (x - mean) / std if len(u) > 1 and std > 0 and known else 0.0
                row[f"{b.prefix}_count_{d}d"] = len(u)
            if b.label_rate:
                d, prior = b.label_rate.days, b.label_rate.prior

                def matured(df: pd.DataFrame, d: int = d) -> tuple[int, int]:
                    m = df[(df.event_ts >= DAY0 - horizon - d * DAYS) & (df.event_ts < DAY0 - horizon)]
                    cb = wanted.merge(m[["transaction_id", "event_ts"]], on="transaction_id")
                    hit = cb[(cb.cb_ts >= cb.event_ts) & (cb.cb_ts < cb.event_ts + horizon)]
                    return hit.transaction_id.nunique(), len(m)

                pos_all, n_all = matured(ev)
                base = pos_all / n_all if n_all else 0.0
                pos, n = matured(group)
                rate = (pos + prior * base) / (n + prior) if n + prior > 0 else base
                row[f"{b.prefix}_label_rate_{d}d"] = rate
                row[f"{b.prefix}_matured_{d}d"] = n
        if features.time_of_day:
            row["hour_of_day"] = (t - DAY0) / HOUR
        rows.append(row)
    return pd.DataFrame(rows)


# Running the job -----------------------------------------------------------------------------------------------------


def _features(spark, root: Path, features: EventFeaturesSpec = FEATURES) -> pd.DataFrame:
    table = build_event_features(spark, root, AS_OF, events=EVENTS, key="transaction_id", features=features,
                                 label=LABEL, outcomes=OUTCOMES)
    expected = ["transaction_id", "as_of_date", "event_ts", *features.feature_names()]
    assert table.columns == expected
    df = table.toPandas()
    df["event_ts"] = pd.to_datetime(df["event_ts"], utc=True)
    return df.sort_values("transaction_id").reset_index(drop=True)


def _compare(got: pd.DataFrame, want: pd.DataFrame, only: pd.Series | None = None) -> None:
    """Equal row sets, then every column: integers exactly, floats to 1e-9 relative (prefix sums subtract)."""
    want = want.sort_values("transaction_id").reset_index(drop=True)
    assert list(got.transaction_id) == list(want.transaction_id)
    if only is not None:
        got, want = got[only.values].reset_index(drop=True), want[only.values].reset_index(drop=True)
    for col in want.columns:
        g, w = got[col], want[col]
        if col in ("transaction_id", "channel", "as_of_date", "event_ts"):
            assert list(g.astype(str)) == list(w.astype(str)), col
        elif col.endswith(("_count_1h", "_count_2h", "_count_24h", "_count_50h", "_count_4d", "_matured_5d")) \
                or "_first_" in col:
            bad = got.transaction_id[(g.astype("int64") != w.astype("int64")).values]
            assert bad.empty, f"{col}: {len(bad)} rows differ, e.g. {list(bad[:5])}"
        else:
            ok = np.isclose(g.astype(float), w.astype(float), rtol=1e-9, atol=1e-9, equal_nan=True)
            bad = pd.DataFrame({"id": got.transaction_id, "got": g, "want": w})[~ok]
            assert bad.empty, f"{col}: {len(bad)} rows differ:\n{bad.head()}"


# Tests -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_seen", ["bits", "pairs"])
def test_features_match_an_independent_pandas_calculation(spark, tmp_path, monkeypatch, first_seen):
    """Every feature of every event of the day against the reference. `pairs`: first_seen of every column by the
    path of columns with many values (one history row per (group, value)) instead of one bit per value."""
    if first_seen == "pairs":
        monkeypatch.setattr(event_features, "MAX_MASK_VALUES", 0)
    events, outcomes = _random_events(seed=0)
    root = _land(tmp_path / "landing", events, outcomes)
    got = _features(spark, root)
    want = reference(events, outcomes)
    assert len(got) == len(events[events.event_ts.dt.date == D]) == 300
    # the data exercises what it must: bursts, ties, boundaries, nulls, matured positives
    assert got.card_count_1h.max() >= 2 and (got.card_first_device_id == 0).any()
    assert (got.card_first_merchant_id == 1).any() and (got.card_first_merchant_id == 0).any()
    assert (got.merchant_matured_5d > 0).all() and got.merchant_label_rate_5d.nunique() > 1
    assert (got.card_amount_zscore_28d if "card_amount_zscore_28d" in got else got.card_amount_zscore_4d).abs().max() > 1
    _compare(got, want)


def test_hand_made_boundaries(spark, tmp_path):
    """A few events placed on the boundaries, with their values worked out by hand."""
    ts = lambda h: DAY0 + pd.Timedelta(hours=h)  # noqa: E731 - hours from D 00:00
    rows = [  # (id, card, merchant, hours from D 00:00, amount, channel, device)
        ("a0", "c1", "m1", -50, 5.0, "pos", None),       # exactly 50 h before b1: inside its 50 h window
        ("a1", "c1", "m1", -50.25, 7.0, "pos", None),    # 15 min earlier: outside every window of the day
        ("a2", "c1", "m2", -24, 11.0, "online", "d1"),   # exactly 24 h before b1
        ("a3", "c1", "m2", -1, 13.0, "online", "d1"),    # exactly 1 h before b1
        ("b1", "c1", "m3", 0, 17.0, "online", "d2"),
        ("b2", "c1", "m3", 0, 19.0, "online", "d2"),     # same instant as b1: neither sees the other
        ("b3", "c1", "m1", 0.5, 23.0, "pos", None),      # device null again: not the first null of the lookback
        ("b4", "c2", "m1", 23.999, 29.0, "atm", "d9"),   # a card with no history
    ]
    events = _typed(pd.DataFrame([{"transaction_id": i, "card_id": c, "merchant_id": m, "event_ts": ts(h),
                                   "amount": a, "channel": ch, "device_id": dev}
                                  for i, c, m, h, a, ch, dev in rows]), EVENT_SCHEMA)
    outcomes = _typed(pd.DataFrame(columns=OUTCOME_SCHEMA.names), OUTCOME_SCHEMA)
    root = _land(tmp_path / "landing", events, outcomes)
    got = _features(spark, root).set_index("transaction_id")
    assert got.loc["b1", "card_count_1h"] == 1 and got.loc["b1", "card_sum_amount_1h"] == 13.0  # a3 only
    assert got.loc["b1", "card_count_24h"] == 2 and got.loc["b1", "card_sum_amount_24h"] == 24.0  # a2, a3
    assert got.loc["b1", "card_count_50h"] == 3 and got.loc["b1", "card_sum_amount_50h"] == 29.0  # a0, a2, a3
    history = [c for c in got.columns if c.startswith(("card_count_", "card_sum_", "card_first_", "card_hours_"))]
    assert got.loc["b2", history].equals(got.loc["b1", history]), "tied events see each other"
    assert got.loc["b3", "card_count_1h"] == 2 and got.loc["b3", "card_sum_amount_1h"] == 36.0  # b1, b2
    assert got.loc["b3", "card_count_24h"] == 3  # a3, b1, b2 (a2 is 24.5 h before)
    assert got.loc[["b1", "b2"], "card_first_merchant_id"].tolist() == [1, 1]
    assert got.loc["b3", "card_first_merchant_id"] == 0  # m1 seen at a0 and a1, within 3 whole days
    assert got.loc[["b1", "b3"], "card_first_device_id"].tolist() == [1, 0]  # d2 new; null seen at a0
    assert got.loc["b1", "card_hours_since_previous"] == 1.0 and got.loc["b3", "card_hours_since_previous"] == 0.5
    assert got.loc["b4", "card_hours_since_previous"] == 96.0 and got.loc["b4", "card_first_device_id"] == 1
    assert got.loc["b4", "card_count_50h"] == 0 and got.loc["b4", "card_sum_amount_50h"] == 0.0
    # usual: c1's amounts of the 4 whole days before D: 5, 7, 11, 13 (mean 9, sample std sqrt(40/3))
    assert got.loc["b1", "card_count_4d"] == 4 and got.loc["b1", "card_amount_ratio_4d"] == pytest.approx(17 / 9)
    assert got.loc["b1", "card_amount_zscore_4d"] == pytest.approx(8 / np.sqrt(40 / 3))
    assert got.loc["b4", "card_amount_ratio_4d"] == 1.0 and got.loc["b4", "card_amount_zscore_4d"] == 0.0
    assert got.loc["b4", "hour_of_day"] == pytest.approx(23.999)
    assert got.loc["b1", "merchant_count_2h"] == 0 and got.loc["b3", "merchant_count_2h"] == 0
    _compare(got.reset_index(), reference(events, outcomes))


def _perturb(events: pd.DataFrame, outcomes: pd.DataFrame, cut: pd.Timestamp,
             rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Changes at or after `cut` only: events inserted (some at exactly `cut` or at another event's instant, with
    new merchants, devices, null devices), events after `cut` shifted to other times at or after it (some into the
    next day), events added on the as-of day, chargebacks added at or after `cut`."""
    later = events.index[events.event_ts > cut]
    moved = rng.choice(later, size=min(len(later), 15), replace=False)
    events = events.copy()
    span = (DAY0 + 2 * DAYS - cut) // pd.Timedelta(minutes=5)
    events.loc[moved, "event_ts"] = [cut + int(k) * pd.Timedelta(minutes=5) for k in rng.integers(0, span, len(moved))]
    n = 25
    at = [cut, *rng.choice(events.event_ts[events.event_ts >= cut].to_numpy(), 5),
          *[cut + pd.Timedelta(seconds=int(s)) for s in rng.integers(0, 2 * 86400, n - 6)]]
    new = pd.DataFrame({
        "transaction_id": [f"new{i}" for i in range(n)],
        "card_id": [f"c{k}" for k in rng.integers(0, 12, n)],
        "merchant_id": [f"m{k}" if k < 8 else "m_new" for k in rng.integers(0, 9, n)],
        "event_ts": pd.to_datetime(at, utc=True),
        "amount": np.round(rng.lognormal(5, 1, n), 2),
        "channel": rng.choice(["pos", "online", "atm", "kiosk"], n),
        "device_id": [None if k == 0 else f"new{k}" for k in rng.integers(0, 4, n)],
    })
    events = pd.concat([events, _typed(new, EVENT_SCHEMA)], ignore_index=True)
    some = events.sample(20, random_state=int(rng.integers(0, 1000))).reset_index(drop=True)
    more = pd.DataFrame({"cb_id": [f"late{i}" for i in range(len(some))], "transaction_id": some.transaction_id,
                         "transaction_ts": some.event_ts, "merchant_id": some.merchant_id,
                         "cb_ts": [max(cut, t) + pd.Timedelta(minutes=int(m))
                                   for t, m in zip(some.event_ts, rng.integers(0, 3000, len(some)), strict=True)],
                         "reason": "fraud"})
    return events, pd.concat([outcomes, _typed(more, OUTCOME_SCHEMA)], ignore_index=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_later_inserted_or_shifted_event_never_changes_an_earlier_event(spark, tmp_path, seed):
    """Whatever happens at or after an instant `cut` of the scored day (a tie with an existing event included),
    every event up to `cut` keeps exactly its features; and the changed data still matches the reference."""
    rng = np.random.default_rng(100 + seed)
    events, outcomes = _random_events(seed, scored=150)
    day = events.event_ts[events.event_ts.dt.date == D]
    cut = day.iloc[int(rng.integers(len(day) // 4, 3 * len(day) // 4))]
    before = _features(spark, _land(tmp_path / "before", events, outcomes))
    events2, outcomes2 = _perturb(events, outcomes, cut, rng)
    after = _features(spark, _land(tmp_path / "after", events2, outcomes2))
    kept = after[after.transaction_id.isin(before.transaction_id[before.event_ts <= cut])].reset_index(drop=True)
    assert len(kept) == (before.event_ts <= cut).sum() > 10
    _compare(kept, before[before.event_ts <= cut])
    _compare(after, reference(events2, outcomes2))


def test_the_merchant_rate_never_uses_an_immature_label(spark, tmp_path):
    """Merchant m1's matured events (those of `[D - 3 - 5 days, D - 3 days)`), worked out by hand: a fraud
    chargeback within the horizon counts; one after the horizon, one of another reason, and every label of an
    event not yet matured (even a chargeback already landed) do not; and no chargeback landed on or after D
    changes a thing."""
    ts = lambda days: (DAY0 + pd.Timedelta(days=days)).round("us")  # noqa: E731 - days from D 00:00
    spec = [  # (id, merchant, days from D 00:00, chargeback: (days after the event, reason) or None)
        ("old", "m1", -8.01, (1, "fraud")),          # before the window: not counted at all
        ("w1", "m1", -8.0, (2.9, "fraud")),          # first instant of the window: positive
        ("w2", "m1", -6.0, (3.0, "fraud")),          # charged back exactly at the horizon: not within it
        ("w3", "m1", -5.0, (1, "dispute")),          # not a fraud reason
        ("w4", "m1", -3.0 - 1e-6, None),             # the last matured instant: a negative
        ("imm1", "m1", -3.0, (0.5, "fraud")),        # immature (matures at D): its chargeback is known, not used
        ("imm2", "m1", -1.0, (0.2, "fraud")),        # immature
        ("o1", "m2", -7.0, (1, "fraud")),            # another merchant: in the overall base rate only
        ("o2", "m2", -6.5, None),
        ("s1", "m1", 0.25, None),                    # scored
        ("s2", "m2", 0.75, None),                    # scored
    ]
    events = _typed(pd.DataFrame([{"transaction_id": i, "card_id": "c1", "merchant_id": m, "event_ts": ts(d),
                                   "amount": 1.0, "channel": "pos", "device_id": None} for i, m, d, _ in spec]),
                    EVENT_SCHEMA)
    cbs = _typed(pd.DataFrame([{"cb_id": f"cb_{i}", "transaction_id": i, "transaction_ts": ts(d), "merchant_id": m,
                                "cb_ts": ts(d + cb[0]), "reason": cb[1]} for i, m, d, cb in spec if cb]),
                 OUTCOME_SCHEMA)
    features = EventFeaturesSpec(history=[FEATURES.history[1]])
    got = _features(spark, _land(tmp_path / "a", events, cbs), features).set_index("transaction_id")
    # matured: m1 w1..w4 (1 positive of 4), m2 o1, o2 (1 of 2): base 2/6; prior 2
    base = 2 / 6
    assert got.loc["s1", "merchant_matured_5d"] == 4 and got.loc["s2", "merchant_matured_5d"] == 2
    assert got.loc["s1", "merchant_label_rate_5d"] == pytest.approx((1 + 2 * base) / (4 + 2))
    assert got.loc["s2", "merchant_label_rate_5d"] == pytest.approx((1 + 2 * base) / (2 + 2))
    _compare(got.reset_index(), reference(events, cbs, features))
    # chargebacks of every event landed on D (before the scored events) and later change nothing
    late = pd.DataFrame([{"cb_id": f"late_{i}", "transaction_id": i, "transaction_ts": t, "merchant_id": m,
                          "cb_ts": DAY0 + pd.Timedelta(hours=h), "reason": "fraud"}
                         for (i, m, t), h in zip(events[["transaction_id", "merchant_id", "event_ts"]].itertuples(
                             index=False), [0, 0.1, 30, 2, 0, 0.2, 40, 0, 1, 0.01, 50], strict=True)])
    again = _features(spark, _land(tmp_path / "b", events, pd.concat([cbs, _typed(late, OUTCOME_SCHEMA)])), features)
    _compare(again, got.reset_index())
