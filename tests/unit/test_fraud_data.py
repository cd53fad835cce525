"""The card-fraud data generator: deterministic, schema-true, each fraud pattern present and detectable, legitimate
behaviour realistic enough for features to matter, drift where it should be, memory flat in the number of days."""

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batchml.fraud_data import (
    DEFAULT_CONFIG,
    RISKY_CATEGORIES,
    SOURCES,
    FraudDataConfig,
    generate_fraud_data,
    read_truth,
    schemas,
)
from batchml.storage import Landing

REPO = Path(__file__).resolve().parents[2]
SMALL = dataclasses.replace(DEFAULT_CONFIG, cards=600, merchants=150, transactions_per_day=1_500, days=8, seed=5)
DAY = pd.Timedelta(days=1)


def _read(root: Path | str, source: str) -> pd.DataFrame:
    """A source with its partition day as column `dt` (a datetime.date)."""
    table = ds.dataset(f"{root}/{source}", format="parquet", partitioning="hive").to_table()
    df = table.to_pandas()
    df["dt"] = pd.to_datetime(df["dt"].astype(str)).dt.date
    return df


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """DEFAULT_CONFIG (2,000 cards, 5,000 transactions a day, 45 days) with its ground truth, read into pandas."""
    root = tmp_path_factory.mktemp("fraud")
    summary = generate_fraud_data(DEFAULT_CONFIG, Landing(str(root / "landing")), truth_dir=root / "truth")
    out = {source: _read(root / "landing", source) for source in SOURCES}
    out["truth"] = read_truth(root / "truth")
    tx = out["card_transactions"]
    tx["fraud"] = tx.transaction_id.isin(out["truth"].transaction_id)
    out["summary"] = summary
    return out


@pytest.fixture(scope="module")
def drift_pair(tmp_path_factory):
    """The same config without and with drift from its 16th day."""
    root = tmp_path_factory.mktemp("fraud_drift")
    base = dataclasses.replace(DEFAULT_CONFIG, cards=1_500, transactions_per_day=4_000, days=30, fraud_rate=0.004)
    drifted = dataclasses.replace(base, drift_start=base.start + dt.timedelta(days=15))
    for name, cfg in (("base", base), ("drift", drifted)):
        generate_fraud_data(cfg, Landing(str(root / name)), truth_dir=root / f"{name}_truth")
    return root, drifted.drift_start


# Determinism ------------------------------------------------------------------------------------------------------


def test_same_config_gives_byte_identical_files(tmp_path):
    for name in ("a", "b"):
        generate_fraud_data(SMALL, Landing(str(tmp_path / name)), truth_dir=tmp_path / f"{name}_truth")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == len(SOURCES) * SMALL.days and a == b
    assert _files(tmp_path / "a_truth") == _files(tmp_path / "b_truth")


def test_another_seed_gives_other_data(tmp_path):
    generate_fraud_data(SMALL, Landing(str(tmp_path / "a")))
    generate_fraud_data(dataclasses.replace(SMALL, seed=6), Landing(str(tmp_path / "b")))
    a, b = _read(tmp_path / "a", "card_transactions"), _read(tmp_path / "b", "card_transactions")
    assert len(a) != len(b) or not a.amount.equals(b.amount)


def test_a_shorter_run_is_a_prefix_of_a_longer_one(tmp_path):
    generate_fraud_data(dataclasses.replace(SMALL, days=3), Landing(str(tmp_path / "short")))
    generate_fraud_data(SMALL, Landing(str(tmp_path / "long")))
    short, long = _files(tmp_path / "short"), _files(tmp_path / "long")
    assert short and all(long[name] == body for name, body in short.items())


def test_regenerating_the_same_config_is_skipped_and_force_rewrites(tmp_path):
    landing = Landing(str(tmp_path / "landing"))
    first = generate_fraud_data(SMALL, landing)
    again = generate_fraud_data(SMALL, landing)
    assert not first.skipped and again.skipped
    assert (again.rows, again.fraud_transactions, again.chargebacks) == (first.rows, first.fraud_transactions,
                                                                        first.chargebacks)
    with_truth = generate_fraud_data(SMALL, landing, truth_dir=tmp_path / "truth")  # truth asked for: not there yet
    assert not with_truth.skipped and (tmp_path / "truth" / "fraud_truth").is_dir()
    assert generate_fraud_data(SMALL, landing, truth_dir=tmp_path / "truth").skipped
    forced = generate_fraud_data(SMALL, landing, force=True)
    assert not forced.skipped and forced.rows == first.rows
    assert len(_read(landing.url, "card_transactions")) == first.rows["card_transactions"]  # rewritten, not appended


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="cards, days"):
        FraudDataConfig(days=0)
    with pytest.raises(ValueError, match="fraud_rate"):
        FraudDataConfig(fraud_rate=0.2)
    with pytest.raises(ValueError, match="merchants"):
        FraudDataConfig(merchants=10)


# Schemas and declared checks ---------------------------------------------------------------------------------------


_ARROW = {"string": pa.string(), "double": pa.float64(), "int": pa.int64(), "bool": pa.bool_(),
          "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32()}


def _draft_sources():
    """The sources the fraud use case declares (specs/fraud.yaml), validated with the whole spec."""
    from batchml.specs import load_spec

    return dict(load_spec(REPO / "specs" / "fraud.yaml").sources)


def test_every_day_of_every_source_lands_with_the_declared_schema(data):
    draft = _draft_sources()
    assert set(draft) == set(SOURCES)
    for source in SOURCES:
        declared = pa.schema([(name, _ARROW[col.type]) for name, col in draft[source].columns.items()])
        assert schemas()[source].equals(declared), source
        landed = Landing(data["summary"].landing_url).landed_days(source)  # a file every day, even with no rows
        assert landed == [DEFAULT_CONFIG.start + dt.timedelta(days=i) for i in range(DEFAULT_CONFIG.days)], source
    for f in Path(data["summary"].landing_url).rglob("*.parquet"):  # every file, not only the merged dataset
        assert pq.read_schema(f).remove_metadata().equals(schemas()[f.parent.parent.name]), f


def test_values_respect_the_declared_checks(data):
    for source, spec in _draft_sources().items():
        frame = data[source]
        for name, col in spec.columns.items():
            values = frame[name]
            assert col.nullable or values.notna().all(), (source, name)
            present = values.dropna()
            if col.unique:
                assert present.is_unique, (source, name)
            if col.allowed is not None:
                assert set(present) <= set(col.allowed), (source, name, set(present) - set(col.allowed))
            if col.min is not None:
                assert present.min() >= col.min, (source, name)
            if col.max is not None:
                assert present.max() <= col.max, (source, name)
    tx = data["card_transactions"]
    online = tx.channel == "online"
    assert tx.device_id.notna().eq(online).all()  # a device for online purchases, none for card-present
    assert (tx.entry_mode == "ecommerce").eq(online).all()
    assert (tx.amount > 0).all() and tx.amount.round(2).eq(tx.amount).all()
    assert set(tx.channel) == {"pos", "online", "atm"} and tx.device_id.isna().any()
    merchants = data["merchants"].set_index("merchant_id")
    assert tx.merchant_category.eq(tx.merchant_id.map(merchants.category)).all()
    cards = data["cards"]
    assert cards.customer_id.nunique() < len(cards)  # some customers hold two cards


def test_entities_land_in_bulk_then_on_the_day_they_appear(data):
    for source, ts in (("cards", "opened_ts"), ("merchants", "created_ts")):
        frame = data[source]
        first = frame[frame.dt == DEFAULT_CONFIG.start]
        later = frame[frame.dt > DEFAULT_CONFIG.start]
        assert len(first) >= (DEFAULT_CONFIG.cards if source == "cards" else DEFAULT_CONFIG.merchants)
        assert len(later) > 0, source
        assert (later[ts].dt.date == later.dt).all() and (first[ts].dt.date <= first.dt).all()


# Events: ordering, references ---------------------------------------------------------------------------------------


def test_transactions_are_sorted_per_day_with_unique_ids_and_existing_entities(data):
    tx = data["card_transactions"]
    assert tx.transaction_id.is_unique
    assert (tx.event_ts.dt.date == tx.dt).all()
    for _, day in tx.groupby("dt"):
        assert day.event_ts.is_monotonic_increasing
    assert 0.85 * DEFAULT_CONFIG.transactions_per_day < tx.groupby("dt").size().mean() < 1.15 * (
        DEFAULT_CONFIG.transactions_per_day)
    opened = tx.card_id.map(data["cards"].set_index("card_id").opened_ts)
    created = tx.merchant_id.map(data["merchants"].set_index("merchant_id").created_ts)
    assert opened.notna().all() and created.notna().all()
    assert (opened < tx.event_ts).all() and (created < tx.event_ts).all()


def test_every_chargeback_follows_an_existing_earlier_transaction(data):
    cb, tx = data["chargebacks"], data["card_transactions"]
    assert cb.chargeback_id.is_unique and cb.transaction_id.is_unique and len(cb) > 100
    joined = cb.merge(tx, on="transaction_id", how="left", suffixes=("", "_tx"))
    assert joined.event_ts.notna().all()
    assert (joined.card_id == joined.card_id_tx).all() and (joined.merchant_id == joined.merchant_id_tx).all()
    delay = joined.chargeback_ts - joined.event_ts
    assert (delay >= DAY).all() and (delay <= 60 * DAY).all()
    assert (cb.chargeback_ts.dt.date == cb.dt).all()  # landed in the partition of chargeback_ts
    for _, day in cb.groupby("dt"):
        assert day.chargeback_ts.is_monotonic_increasing


def test_chargebacks_mature_over_weeks_and_a_few_are_not_fraud(data):
    truth, cb, tx = data["truth"], data["chargebacks"], data["card_transactions"]
    delay_days = (truth.chargeback_ts - truth.event_ts).dropna() / DAY
    assert 8 < delay_days.median() < 12 and delay_days.max() <= 60 and delay_days.quantile(0.95) > 20
    never = truth.chargeback_ts.isna().mean()
    assert 0.05 < never < 0.25  # 5% of frauds, and half of the small card tests, are never disputed
    landed = truth.chargeback_ts.notna() & (truth.chargeback_ts.dt.date <= DEFAULT_CONFIG.end)
    assert set(truth.transaction_id[landed]) <= set(cb.transaction_id)
    not_fraud = ~cb.transaction_id.isin(truth.transaction_id)
    assert 0.02 < not_fraud.mean() < 0.2  # disputes and friendly fraud: small, documented
    assert cb.reason[not_fraud].str.startswith("fraud_").any() and not cb.reason[not_fraud].str.startswith(
        "fraud_").all()
    assert tx.fraud.sum() == len(truth) == data["summary"].fraud_transactions
    assert data["summary"].fraud_chargebacks == (~not_fraud).sum()


# Fraud patterns ----------------------------------------------------------------------------------------------------


def test_fraud_rate_follows_the_knob(data, tmp_path):
    tx = data["card_transactions"]
    assert 0.75 * DEFAULT_CONFIG.fraud_rate < tx.fraud.mean() < 1.25 * DEFAULT_CONFIG.fraud_rate
    assert data["summary"].fraud_rate == pytest.approx(tx.fraud.mean())
    higher = dataclasses.replace(DEFAULT_CONFIG, days=20, fraud_rate=0.005)
    summary = generate_fraud_data(higher, Landing(str(tmp_path)))
    assert 0.75 * 0.005 < summary.fraud_rate < 1.25 * 0.005


def test_every_pattern_is_present(data):
    counts = data["truth"].pattern.value_counts()
    assert set(counts.index) == {"card_testing", "account_takeover", "lost_stolen", "ring"}
    assert (counts / counts.sum()).min() > 0.1, counts


def test_frauds_are_over_represented_at_night_and_in_risky_categories(data):
    tx = data["card_transactions"]
    night = tx.event_ts.dt.hour < 5
    risky = tx.merchant_category.isin(RISKY_CATEGORIES)
    assert night[tx.fraud].mean() > 4 * night[~tx.fraud].mean()
    assert 0.02 < night[~tx.fraud].mean() < 0.1  # night owls exist
    assert risky[tx.fraud].mean() > 10 * risky[~tx.fraud].mean()
    assert 0.005 < risky[~tx.fraud].mean()  # legitimate cardholders buy electronics and travel too
    # fraudsters choose risky merchants, beyond their supply (online merchants are riskier): compare each takeover
    # or stolen-card purchase with the risky share of the merchants of its kind (online or card-present)
    merchants = tx.drop_duplicates("merchant_id").set_index("merchant_id")
    online, risky_m = merchants.channel == "online", merchants.merchant_category.isin(RISKY_CATEGORIES)
    truth = data["truth"]
    for pattern in ("account_takeover", "lost_stolen"):
        chosen = truth.merchant_id[truth.pattern == pattern]
        supply = np.where(online[chosen], risky_m[online].mean(), risky_m[~online].mean()).mean()
        assert risky_m[chosen].mean() > 2 * supply, (pattern, risky_m[chosen].mean(), supply)


def test_card_testing_bursts_are_small_amounts_on_one_card_within_minutes(data):
    truth = data["truth"]
    tests = truth[truth.pattern == "card_testing"].sort_values("event_ts")
    episodes = tests.groupby("episode_id")
    assert episodes.ngroups >= 10
    tx = data["card_transactions"].set_index("transaction_id")
    for _, ep in episodes:
        assert ep.card_id.nunique() == 1
        small = ep[ep.amount < 5]
        assert len(small) >= 3 and small.merchant_id.nunique() == 1
        assert small.event_ts.max() - small.event_ts.min() < pd.Timedelta(minutes=15)
        assert (tx.loc[ep.transaction_id, "channel"] == "online").all()
        large = ep[ep.amount >= 5]
        assert len(large) <= 1 and (large.event_ts > small.event_ts.max()).all()
    with_large = episodes.amount.max() > 50
    assert 0.35 < with_large.mean() < 0.85  # 60% end with a large purchase


def test_account_takeover_brings_a_new_device_new_merchants_and_a_spike_in_amount(data):
    tx = data["card_transactions"].sort_values("event_ts")
    truth = data["truth"]
    ato = set(truth.transaction_id[truth.pattern == "account_takeover"])
    legit = tx[~tx.fraud]
    card_median = legit.groupby("card_id").amount.median()
    first_merchant = ~tx.duplicated(["card_id", "merchant_id"])
    is_ato = tx.transaction_id.isin(ato)
    late = tx.event_ts >= tx.event_ts.min() + 7 * DAY  # cards have a history by then
    assert is_ato[late].sum() > 30
    assert first_merchant[is_ato & late].mean() > 0.9 > 0.3 > first_merchant[~tx.fraud & late].mean()
    assert tx[is_ato].device_id.notna().all()
    legit_devices = set(zip(legit.card_id, legit.device_id, strict=True))
    assert not any(pair in legit_devices for pair in zip(tx[is_ato].card_id, tx[is_ato].device_id, strict=True))
    ratio = tx.amount / tx.card_id.map(card_median)
    assert (ratio[is_ato] > 3).mean() > 0.8 and (ratio[~tx.fraud] > 3).mean() < 0.1


def test_ring_merchants_share_many_frauds_on_many_cards_over_some_days(data):
    tx, truth = data["card_transactions"], data["truth"]
    rings = truth[truth.pattern == "ring"]
    assert rings.ring_id.nunique() >= 2 and rings.ring_id.notna().all()
    assert truth.ring_id[truth.pattern != "ring"].isna().all()
    overall = tx.fraud.mean()
    for _, ring in rings.groupby("ring_id"):
        members = set(ring.merchant_id)
        assert 3 <= len(members) and ring.card_id.nunique() > 0.8 * len(ring)
        span = ring.event_ts.max() - ring.event_ts.min()
        assert 3 * DAY < span < 22 * DAY
        window = tx[tx.merchant_id.isin(members) & tx.event_ts.between(ring.event_ts.min(), ring.event_ts.max())]
        assert window.fraud.mean() > 10 * overall


def test_lost_or_stolen_cards_are_used_in_person_within_hours(data):
    tx = data["card_transactions"].set_index("transaction_id")
    truth = data["truth"]
    stolen = truth[truth.pattern == "lost_stolen"]
    assert (tx.loc[stolen.transaction_id, "channel"] != "online").all()
    spans = stolen.groupby("episode_id").agg(cards=("card_id", "nunique"), n=("card_id", "size"),
                                             first=("event_ts", "min"), last=("event_ts", "max"))
    assert (spans.cards == 1).all() and (spans.n >= 2).all() and ((spans["last"] - spans["first"]) < 4 * pd.Timedelta(
        hours=1)).all()
    entry = tx.loc[stolen.transaction_id, "entry_mode"]
    assert entry.eq("manual").mean() > 10 * tx[~tx.fraud].entry_mode.eq("manual").mean()


# Legitimate behaviour ---------------------------------------------------------------------------------------------


def test_legitimate_cards_return_to_their_usual_merchants_amounts_and_hours(data):
    tx = data["card_transactions"]
    legit = tx[~tx.fraud]
    per_card = legit.groupby("card_id").size()
    busy = per_card[per_card >= 40].index
    assert len(busy) > 300
    legit = legit[legit.card_id.isin(busy)]
    pair = legit.groupby(["card_id", "merchant_id"]).size().rename("n").reset_index().sort_values("n", ascending=False)
    top5 = pair.groupby("card_id").head(5).groupby("card_id").n.sum() / per_card[busy]
    assert top5.median() > 0.6  # against about 5/300 if merchants were picked at random
    medians = legit.groupby("card_id").amount.median()
    assert medians.quantile(0.9) > 2 * medians.quantile(0.1)  # each card its own typical amount
    hour = legit.event_ts.dt.hour + legit.event_ts.dt.minute / 60
    circular = np.abs(((hour - legit.card_id.map(hour.groupby(legit.card_id).median())) + 12) % 24 - 12)
    spread_all = np.abs(((hour - hour.median()) + 12) % 24 - 12)
    assert circular.mean() < 0.8 * spread_all.mean()  # each card its own time-of-day profile
    rate = per_card.reindex(data["cards"].card_id, fill_value=0)
    assert rate.quantile(0.9) > 4 * max(1, rate.quantile(0.1))  # daily rates vary by card


# Drift -------------------------------------------------------------------------------------------------------------


def test_drift_changes_only_what_it_should_and_only_from_its_start(drift_pair):
    root, drift_start = drift_pair
    base, drifted = _files(root / "base"), _files(root / "drift")
    for name, body in drifted.items():
        day = dt.date.fromisoformat(name.split("dt=")[1][:10])
        if day < drift_start:
            assert base[name] == body, name  # identical before the drift starts

    def frame(name):
        tx = _read(root / name, "card_transactions")
        truth = read_truth(root / f"{name}_truth")
        tx["fraud"] = tx.transaction_id.isin(truth.transaction_id)
        return tx[tx.dt >= drift_start], truth[truth.event_ts.dt.date >= drift_start]

    (tb, fb), (td, fd) = frame("base"), frame("drift")
    assert td[~td.fraud].amount.median() > 1.15 * tb[~tb.fraud].amount.median()
    assert (td[~td.fraud].channel == "online").mean() > (tb[~tb.fraud].channel == "online").mean() + 0.03
    assert (td[td.fraud].channel == "online").mean() > (tb[tb.fraud].channel == "online").mean() + 0.05
    assert (fd.pattern == "lost_stolen").mean() < 0.75 * (fb.pattern == "lost_stolen").mean()
    merchants = _read(root / "drift", "merchants")
    new_ring = set(merchants.merchant_id[merchants.created_ts == pd.Timestamp(drift_start, tz="UTC")])
    assert len(new_ring) >= 3
    at_new = fd[fd.merchant_id.isin(new_ring)]
    ring_at_new = at_new[at_new.pattern == "ring"]
    assert len(ring_at_new) > 20 and len(ring_at_new) > 0.8 * len(at_new) and ring_at_new.ring_id.nunique() == 1
    assert not set(fb.ring_id.dropna()) & set(at_new.ring_id)
    assert 0.75 * 0.004 < td.fraud.mean() < 1.25 * 0.004  # the mix moves, not the rate


# Memory ------------------------------------------------------------------------------------------------------------


_PEAK = """
import resource, sys, tempfile
from batchml.fraud_data import FraudDataConfig, generate_fraud_data
from batchml.storage import Landing
cfg = FraudDataConfig(cards=25_000, merchants=2_500, transactions_per_day=60_000, days=int(sys.argv[1]))
with tempfile.TemporaryDirectory() as out:
    generate_fraud_data(cfg, Landing(out), truth_dir=out + "/truth")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_does_not_grow_with_days():
    """Peak RSS of a fresh process generating 3 vs 12 days of 60,000 transactions: the same (not timed).

    Keeping each day's events (about 6 MB of Arrow data a day here) would add some 50 MB to a peak of about 180.
    """
    import subprocess
    import sys

    def peak_kb(days: int) -> int:
        done = subprocess.run([sys.executable, "-c", _PEAK, str(days)], capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    short, long = peak_kb(3), peak_kb(12)
    assert long < 1.1 * short, (short, long)
