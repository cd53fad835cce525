"""Great Expectations on raw partitions and feature tables: bad input fails loudly, naming what is wrong."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batchml.errors import DataValidationError, LandingError
from batchml.partitions import check_landed as check_partitions_landed
from batchml.validation import (
    active_population_size,
    feature_suite,
    raise_for_failures,
    raw_suite,
    run_suite,
    validate_raw,
)

pytestmark = pytest.mark.gx


def _partition_file(landing, source, day) -> Path:
    return next((Path(landing.url) / source / f"dt={day.isoformat()}").glob("*.parquet"))


def _rewrite(landing, source, day, change):
    path = _partition_file(landing, source, day)
    table = change(pq.read_table(path))
    pq.write_table(table, path)


def _set(table: pa.Table, column: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, values)


def _first_rows(table, column, value, n=3):
    """`column` with its first n values replaced by `value`."""
    arr = table.column(column).to_pylist()
    arr[:n] = [value] * n
    return pa.array(arr, table.schema.field(column).type)


BAD_INPUT = {
    "null_key": ("transactions", lambda t: _set(t, "customer_id", _first_rows(t, "customer_id", None)),
                 ["expect_column_values_to_not_be_null on customer_id", "3 unexpected"]),
    "negative_amount": ("transactions", lambda t: _set(t, "amount", _first_rows(t, "amount", -12.5)),
                        ["expect_column_values_to_be_between on amount", "sample: [-12.5, -12.5, -12.5]"]),
    "absurd_amount": ("transactions", lambda t: _set(t, "amount", _first_rows(t, "amount", 9.9e9, n=1)),
                      ["expect_column_values_to_be_between on amount", "9900000000.0"]),
    "unknown_channel": ("transactions", lambda t: _set(t, "channel", _first_rows(t, "channel", "fax")),
                        ["expect_column_values_to_be_in_set on channel", "sample: ['fax', 'fax', 'fax']"]),
    "wrong_type": ("transactions", lambda t: _set(t, "amount", pc.cast(t.column("amount"), pa.string())),
                   ["column_type_matches_spec on amount", "observed: string"]),
    "duplicate_key": ("transactions", lambda t: pa.concat_tables([t, t.slice(0, 2)]),
                      ["expect_column_values_to_be_unique on transaction_id", "4 unexpected"]),
    "missing_column": ("support_tickets", lambda t: t.drop(["reason"]),
                       ["expect_table_columns_to_match_set", "reason"]),
    "empty_required_source": ("transactions", lambda t: t.slice(0, 0),
                              ["expect_table_row_count_to_be_between", "observed: 0"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_raw_partition_fails_listing_the_expectation_and_sample(case, churn_spec, landing_copy, small_as_of, tmp_path):
    source, change, fragments = BAD_INPUT[case]
    newest = small_as_of - dt.timedelta(days=1)
    _rewrite(landing_copy, source, newest, change)
    with pytest.raises(DataValidationError) as err:
        validate_raw(churn_spec, Path(landing_copy.url), small_as_of, tmp_path / "gx", "test")
    message = str(err.value)
    assert f"churn.raw.{source}: FAILED" in message
    assert "Nothing was published" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    page = err.value.data_docs
    assert page and Path(page.removeprefix("file://")).exists(), "a Data Docs page must be left to look at"


def test_clean_partitions_pass(churn_spec, small_landing, small_as_of, tmp_path):
    reports = validate_raw(churn_spec, Path(small_landing.url), small_as_of, tmp_path / "gx", "ok")
    assert [r.suite for r in reports] == [f"churn.raw.{s}" for s in ("customers", "churn_events", "transactions", "support_tickets")]
    assert all(r.success for r in reports)


def test_a_tolerated_share_of_new_categories_passes(churn_spec, landing_copy, small_as_of, tmp_path):
    """category allows 10% unknown values (mostly: 0.9): drift for monitoring, not a stop."""
    newest = small_as_of - dt.timedelta(days=1)
    _rewrite(landing_copy, "transactions", newest, lambda t: _set(t, "category", _first_rows(t, "category", "crypto", n=5)))
    reports = validate_raw(churn_spec, Path(landing_copy.url), small_as_of, tmp_path / "gx", "drift")
    assert all(r.success for r in reports)


def test_corrupt_parquet_file_names_the_file(churn_spec, landing_copy, small_as_of, tmp_path):
    path = _partition_file(landing_copy, "transactions", small_as_of - dt.timedelta(days=1))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    with pytest.raises(LandingError, match=rf"{path.name}: not a readable Parquet file.*Re-land this file"):
        validate_raw(churn_spec, Path(landing_copy.url), small_as_of, tmp_path / "gx", "corrupt")


def test_missing_partitions_are_listed(churn_spec, landing_copy, small_as_of):
    import shutil

    for day in ("2026-02-01", "2026-02-02"):
        shutil.rmtree(Path(landing_copy.url) / "transactions" / f"dt={day}")
    shutil.rmtree(Path(landing_copy.url) / "customers" / f"dt={small_as_of - dt.timedelta(days=1)}")
    with pytest.raises(LandingError) as err:
        check_partitions_landed(churn_spec, landing_copy, small_as_of)
    message = str(err.value)
    assert "customers: 1 missing (2026-04-07)" in message
    assert "transactions: 2 missing (2026-02-01, 2026-02-02)" in message


def test_raw_suite_is_derived_from_the_declared_columns(churn_spec):
    names = [(name, kw.get("column")) for name, kw in raw_suite(churn_spec, "transactions")]
    assert ("expect_table_row_count_to_be_between", None) in names  # require_rows
    assert ("expect_column_values_to_be_unique", "transaction_id") in names
    assert ("expect_column_values_to_be_in_set", "category") in names
    assert ("expect_column_values_to_be_between", "amount") in names
    mostly = {kw["column"]: kw.get("mostly") for name, kw in raw_suite(churn_spec, "transactions") if name.endswith("in_set")}
    assert mostly == {"channel": 1.0, "category": 0.9}


def test_feature_suite_catches_duplicates_nulls_and_wrong_counts(spark, churn_spec, small_landing, small_as_of, tmp_path):
    from batchml.features import build_features

    df = build_features(spark, churn_spec, Path(small_landing.url), small_as_of).toPandas()
    expected = active_population_size(churn_spec, Path(small_landing.url), small_as_of)
    assert expected == len(df)  # the independent pyarrow count agrees with Spark's population
    df["as_of_date"] = df["as_of_date"].astype(str)
    ok = run_suite(df, "churn.features", feature_suite(churn_spec, small_as_of, expected), tmp_path / "gx", "ok")
    assert ok.success, ok.failures

    bad = pd.concat([df, df.head(2)], ignore_index=True)
    bad.loc[0, "txn_share_channel_app_30d"] = 1.5
    bad.loc[1, "tenure_days"] = None
    suite = feature_suite(churn_spec, small_as_of, expected)
    report = run_suite(bad, "churn.features", suite, tmp_path / "gx", "bad")
    failed = {(f["expectation"], f["column"]) for f in report.failures}
    assert failed == {
        ("expect_table_row_count_to_equal", None),
        ("expect_column_values_to_be_unique", "customer_id"),
        ("expect_column_values_to_be_between", "txn_share_channel_app_30d"),
        ("expect_column_values_to_not_be_null", "tenure_days"),
    }
    # the suite runs without samples first; the failed expectations run again to name what failed
    assert report.evaluated == len(suite)
    by_column = {f["column"]: f for f in report.failures}
    assert by_column["txn_share_channel_app_30d"]["partial_unexpected_list"] == [1.5]
    assert by_column["customer_id"]["unexpected_count"] == 4
    assert by_column[None]["observed_value"] == expected + 2
    with pytest.raises(DataValidationError, match="expect_table_row_count_to_equal"):
        raise_for_failures(report, "fix it")


# Every partition a run reads, once per content --------------------------------------------------------------------


def _counts(reports) -> dict[str, tuple[int, int]]:
    return {r.suite.rsplit(".", 1)[-1]: (r.partitions_validated, r.partitions_unchanged) for r in reports}


def test_every_partition_read_is_validated_once_per_content(churn_spec, landing_copy, small_as_of, tmp_path):
    root, cache = Path(landing_copy.url), tmp_path / "cache"
    first = _counts(validate_raw(churn_spec, root, small_as_of, tmp_path / "gx", "a", cache_root=cache))
    assert first["transactions"] == (90, 0)  # the whole 90-day window, not only the newest day
    assert first["customers"][0] == len(landing_copy.landed_days("customers", before=small_as_of))
    again = _counts(validate_raw(churn_spec, root, small_as_of, tmp_path / "gx", "b", cache_root=cache))
    assert again == {source: (0, validated + unchanged) for source, (validated, unchanged) in first.items()}
    # the next day reads one new partition per source; the rest is unchanged
    nxt = _counts(validate_raw(churn_spec, root, small_as_of + dt.timedelta(days=1), tmp_path / "gx", "c",
                               cache_root=cache, partitions=None))
    assert nxt["transactions"] == (1, 89)
    # a re-delivered file is validated again
    day = small_as_of - dt.timedelta(days=40)
    _rewrite(landing_copy, "transactions", day, lambda t: t.slice(0, t.num_rows - 1))
    changed = _counts(validate_raw(churn_spec, root, small_as_of, tmp_path / "gx", "d", cache_root=cache))
    assert changed["transactions"] == (1, 89)
    # so is every partition when the suite changes (here: a new extra expectation in the spec)
    data = churn_spec.model_dump()
    data["expectations"]["raw"] = {"transactions": [{"expectation": "expect_column_values_to_not_be_null",
                                                     "kwargs": {"column": "channel"}}]}
    stricter = type(churn_spec).model_validate(data)
    resuite = _counts(validate_raw(stricter, root, small_as_of, tmp_path / "gx", "e", cache_root=cache))
    assert resuite["transactions"] == (90, 0) and resuite["customers"][0] == 0


@pytest.mark.parametrize(("case", "days_back", "fragments"), [
    ("negative_amount", 30, ["expect_column_values_to_be_between on amount", "sample: [-12.5, -12.5, -12.5]"]),
    ("duplicate_key", 55, ["expect_column_values_to_be_unique on transaction_id", "4 unexpected"]),
    ("null_key", 80, ["expect_column_values_to_not_be_null on customer_id", "3 unexpected"]),
])
def test_bad_data_in_an_older_partition_is_caught_and_named(case, days_back, fragments, churn_spec, landing_copy,
                                                             small_as_of, tmp_path):
    day = small_as_of - dt.timedelta(days=days_back)
    source, change, _ = BAD_INPUT[case]
    _rewrite(landing_copy, source, day, change)
    cache = tmp_path / "cache"
    for attempt in ("first", "again"):  # a failure is never recorded: every run that reads it fails
        with pytest.raises(DataValidationError) as err:
            validate_raw(churn_spec, Path(landing_copy.url), small_as_of, tmp_path / "gx", attempt, cache_root=cache)
        message = str(err.value)
        assert f"partition dt={day} of 'transactions': {_partition_file(landing_copy, source, day)}" in message
        for fragment in fragments:
            assert fragment in message, message


def test_partitions_within_their_tolerance_pass_from_the_batch_run(churn_spec, landing_copy, small_as_of, tmp_path,
                                                                   monkeypatch):
    """A batch of partitions runs strict (no `mostly`); a partition whose new categories stay within its 10%
    tolerance passes from that run's counts, and only the partition over it is validated again on its own."""
    import batchml.validation.raw as raw

    tolerated, over = small_as_of - dt.timedelta(days=10), small_as_of - dt.timedelta(days=20)
    _rewrite(landing_copy, "transactions", tolerated,
             lambda t: _set(t, "category", _first_rows(t, "category", "crypto", n=5)))
    _rewrite(landing_copy, "transactions", over,
             lambda t: _set(t, "category", _first_rows(t, "category", "crypto", n=t.num_rows // 5)))
    runs, real = [], raw.run_suite
    monkeypatch.setattr(raw, "run_suite", lambda df, name, *a, **k: runs.append((name, len(df))) or real(df, name, *a, **k))
    root, cache = Path(landing_copy.url), tmp_path / "cache"
    with pytest.raises(DataValidationError) as err:
        validate_raw(churn_spec, root, small_as_of, tmp_path / "gx", "drift", cache_root=cache)
    message = str(err.value)
    assert f"partition dt={over} of 'transactions'" in message and "expect_column_values_to_be_in_set" in message
    assert f"dt={tolerated}" not in message
    over_rows = pq.read_table(_partition_file(landing_copy, "transactions", over)).num_rows
    assert [n for name, n in runs if name == "churn.raw.transactions"][1:] == [over_rows]  # the batch, then `over`
    # the tolerated partition was recorded as passed: once `over` is fixed, only it is validated again
    _rewrite(landing_copy, "transactions", over, lambda t: _set(t, "category", pa.array(
        ["groceries"] * t.num_rows, t.schema.field("category").type)))
    fixed = _counts(validate_raw(churn_spec, root, small_as_of, tmp_path / "gx", "fixed", cache_root=cache))
    assert fixed["transactions"] == (1, 89)


def test_mostly_follows_great_expectations_rule():
    from great_expectations.expectations.expectation import _mostly_success

    from batchml.validation.raw import mostly_success, mostly_tolerances

    for considered, unexpected, mostly in [(100, 10, 0.9), (100, 11, 0.9), (7, 0, 1.0), (3, 1, 0.5), (1000, 1, 0.999)]:
        assert mostly_success(considered, unexpected, mostly) == _mostly_success(considered, unexpected, mostly)
    suite = [("expect_column_values_to_be_in_set", {"column": "a", "value_set": [1], "mostly": 0.9}),
             ("expect_column_values_to_be_in_set", {"column": "b", "value_set": [1], "mostly": 1.0}),
             ("expect_column_values_to_not_be_null", {"column": "a", "mostly": 0.5}),
             ("expect_column_values_to_be_between", {"column": "c", "min_value": 0, "mostly": 0.8}),
             ("expect_column_values_to_be_between", {"column": "c", "max_value": 9, "mostly": 0.7})]
    assert mostly_tolerances(suite) == {("expect_column_values_to_be_in_set", "a"): 0.9}


def test_events_outside_their_partition_day_fail_the_raw_check(churn_spec, landing_copy, small_as_of, tmp_path):
    import datetime

    newest = small_as_of - dt.timedelta(days=1)
    future = pa.scalar(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC), pa.timestamp("us", tz="UTC"))
    _rewrite(landing_copy, "transactions", newest, lambda t: _set(t, "event_ts", pa.array(
        [future.as_py()] * 2 + t.column("event_ts").to_pylist()[2:], t.schema.field("event_ts").type)))
    with pytest.raises(DataValidationError) as err:
        validate_raw(churn_spec, Path(landing_copy.url), small_as_of, tmp_path / "gx", "late")
    message = str(err.value)
    assert "event_time_within_partition on event_ts" in message and "2 unexpected" in message
    assert "2030-01-01T00:00:00+00:00" in message and f"partition dt={newest}" in message
    # a declared lateness accepts late arrivals (an event of the day before, landed a day late), not the future
    data = churn_spec.model_dump()
    data["sources"]["transactions"]["lateness_hours"] = 48
    lenient = type(churn_spec).model_validate(data)
    with pytest.raises(DataValidationError, match="event_time_within_partition"):
        validate_raw(lenient, Path(landing_copy.url), small_as_of, tmp_path / "gx", "late2")


def test_a_runaway_key_fails_its_maximum_length(churn_spec, landing_copy, small_as_of, tmp_path):
    newest = small_as_of - dt.timedelta(days=1)
    huge = "C" * 5_000_001
    _rewrite(landing_copy, "transactions", newest, lambda t: _set(t, "transaction_id", _first_rows(
        t, "transaction_id", huge, n=1)))
    with pytest.raises(DataValidationError) as err:
        validate_raw(churn_spec, Path(landing_copy.url), small_as_of, tmp_path / "gx", "long")
    message = str(err.value)
    assert "expect_column_value_lengths_to_be_between on transaction_id" in message and "max_value=256" in message
    assert len(message) < 20_000, "the message shows a sample, not the 5 MB value"


def test_a_large_validated_frame_is_freed_once_the_next_run_replaces_it(tmp_path, monkeypatch):
    """GX's validation objects hold the frame in reference cycles; without a collection after a large frame, the
    raw checks of a long history kept every batch (8 GB at 1M customers). GX keeps the newest batch, not the rest."""
    import weakref

    import numpy as np

    from batchml.validation import gx

    monkeypatch.setattr(gx, "LARGE_FRAME_ROWS", 1000)  # the same rule, on frames small enough for a test
    suite = [("expect_column_values_to_be_between", {"column": "a", "min_value": 0, "max_value": 1})]
    first = pd.DataFrame({"a": np.random.default_rng(0).random(1000)})
    run_suite(first, "frames", suite, tmp_path / "gx", "first")
    freed = weakref.ref(first)
    del first
    run_suite(pd.DataFrame({"a": np.zeros(1000)}), "frames", suite, tmp_path / "gx", "second")
    assert freed() is None


def test_a_batch_failure_naming_no_known_partition_rechecks_them_all(churn_spec, landing_copy, small_as_of, tmp_path,
                                                                     monkeypatch):
    """If GX's per-row index values ever stop matching the batch's partition labels (a format change), the batch's
    partitions are validated on their own rather than recorded as passed."""
    from batchml.validation import raw

    real = raw.run_suite

    def renamed(frame, *args, index_column=None, **kwargs):
        report = real(frame, *args, index_column=index_column, **kwargs)
        for failure in report.failures:
            if failure.get("unexpected_by"):
                failure["unexpected_by"] = {f"[{k}]": n for k, n in failure["unexpected_by"].items()}
        return report

    monkeypatch.setattr(raw, "run_suite", renamed)
    day = small_as_of - dt.timedelta(days=30)
    source, change, _ = BAD_INPUT["negative_amount"]
    _rewrite(landing_copy, source, day, change)
    with pytest.raises(DataValidationError, match="expect_column_values_to_be_between on amount"):
        validate_raw(churn_spec, Path(landing_copy.url), small_as_of, tmp_path / "gx", "renamed")
