"""The demo data generator: deterministic, schema-true, learnable, with working scale and drift knobs."""

import dataclasses
import datetime as dt

import pyarrow.dataset as ds
import pytest

from batchml.generate import CATEGORIES, DRIFT_CATEGORY, SOURCES, GeneratorConfig, generate
from batchml.storage import Landing
from batchml.validation import schema_failures


def _read(landing: Landing, source: str):
    return ds.dataset(f"{landing.url}/{source}", format="parquet", partitioning="hive").to_table()


def test_same_config_gives_identical_data(tmp_path):
    cfg = GeneratorConfig(customers=300, days=20, seed=3)
    a, b = Landing(str(tmp_path / "a")), Landing(str(tmp_path / "b"))
    generate(cfg, a)
    generate(cfg, b)
    for source in SOURCES:
        assert _read(a, source).sort_by([("dt", "ascending")]).equals(_read(b, source).sort_by([("dt", "ascending")]))


def test_another_seed_gives_other_data(tmp_path):
    cfg = GeneratorConfig(customers=300, days=20, seed=3)
    a, b = Landing(str(tmp_path / "a")), Landing(str(tmp_path / "b"))
    generate(cfg, a)
    generate(dataclasses.replace(cfg, seed=4), b)
    assert _read(a, "transactions").num_rows != _read(b, "transactions").num_rows


def test_every_day_of_every_source_lands_with_the_spec_schema(small_landing, small_config, churn_spec):
    for source in SOURCES:
        days = small_landing.landed_days(source)
        assert days[0] == small_config.start and days[-1] == small_config.end
        assert len(days) == small_config.days
        table = _read(small_landing, source).drop(["dt"])
        assert table.schema.names == list(churn_spec.sources[source].columns)
        assert schema_failures(table.schema, churn_spec.sources[source].columns) == []


def test_regenerating_the_same_config_is_skipped_and_force_rewrites(tmp_path):
    cfg = GeneratorConfig(customers=200, days=10, seed=1)
    landing = Landing(str(tmp_path))
    first = generate(cfg, landing)
    again = generate(cfg, landing)
    assert not first.skipped and again.skipped and again.rows == first.rows
    forced = generate(cfg, landing, force=True)
    assert not forced.skipped and forced.rows == first.rows
    assert _read(landing, "customers").num_rows == first.rows["customers"]  # rewritten, not appended


def test_churn_follows_behaviour(small_landing):
    """Churners' activity falls and their tickets rise in the weeks before churn; others' do not."""
    import pandas as pd

    tx = _read(small_landing, "transactions").select(["customer_id", "event_ts"]).to_pandas()
    churn = _read(small_landing, "churn_events").to_pandas()
    assert 0.02 < len(churn) / _read(small_landing, "customers").num_rows < 0.5
    late = churn[churn.churn_ts > pd.Timestamp("2026-03-01", tz="UTC")]
    tx = tx.merge(late[["customer_id", "churn_ts"]], on="customer_id")
    days_before = (tx.churn_ts - tx.event_ts).dt.days
    early_rate = ((days_before >= 50) & (days_before < 60)).sum()
    last_rate = ((days_before >= 0) & (days_before < 10)).sum()
    assert last_rate < 0.9 * early_rate, (early_rate, last_rate)
    tickets = _read(small_landing, "support_tickets").select(["customer_id", "opened_ts"]).to_pandas()
    tickets = tickets.merge(late[["customer_id", "churn_ts"]], on="customer_id")
    t_before = (tickets.churn_ts - tickets.opened_ts).dt.days
    assert ((t_before >= 0) & (t_before < 30)).sum() > 2 * ((t_before >= 30) & (t_before < 60)).sum()


def test_drift_knob_shifts_amounts_channels_and_adds_a_category(tmp_path):
    base = GeneratorConfig(customers=400, days=30, seed=5)
    drifted = dataclasses.replace(base, drift_start=dt.date(2026, 1, 16))
    a, b = Landing(str(tmp_path / "a")), Landing(str(tmp_path / "b"))
    generate(base, a)
    generate(drifted, b)
    ta = _read(a, "transactions").to_pandas()
    tb = _read(b, "transactions").to_pandas()
    after = tb.event_ts >= "2026-01-16"
    before_b, after_b = tb[~after], tb[after]
    assert set(ta.category) == set(CATEGORIES)
    assert DRIFT_CATEGORY in set(after_b.category) and DRIFT_CATEGORY not in set(before_b.category)
    assert after_b.amount.median() > 1.2 * ta[ta.event_ts >= "2026-01-16"].amount.median()
    assert (after_b.channel == "app").mean() > (ta.channel == "app").mean() + 0.15


_PEAK = """
import sys, tempfile, tracemalloc
from batchml.generate import GeneratorConfig, generate
from batchml.storage import Landing
generate(GeneratorConfig(customers=500, days=5, block_size=1_000), Landing(tempfile.mkdtemp()))  # warm-up imports
tracemalloc.start()
generate(GeneratorConfig(customers=int(sys.argv[1]), days=15, seed=2, block_size=1_000), Landing(tempfile.mkdtemp()))
print(tracemalloc.get_traced_memory()[1])
"""


def test_memory_is_bounded_by_the_block_size():
    """Four times the customers in blocks of the same size: the peak (numpy and Python objects) stays the same.

    Measured in a fresh process: tracemalloc counts every thread's allocations, and this suite runs others.
    """
    import subprocess
    import sys

    def peak(customers: int) -> int:
        done = subprocess.run([sys.executable, "-c", _PEAK, str(customers)], capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    small, large = peak(1_000), peak(4_000)
    assert large < 1.5 * small, (small, large)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="customers and days"):
        GeneratorConfig(customers=0)
    with pytest.raises(ValueError, match="block_size"):
        GeneratorConfig(block_size=10**7)
