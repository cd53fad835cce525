"""The Spark feature job: values against an independent pandas calculation, and point-in-time correctness."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batchml.errors import LandingError, SpecError
from batchml.features import build_features, run_feature_job
from batchml.specs import AS_OF_COLUMN, UseCaseSpec, load_spec
from batchml.storage import Landing, day_range

pytestmark = pytest.mark.spark

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
D = dt.date(2026, 3, 10)
T = pd.Timestamp("2026-03-10", tz="UTC")  # the as-of instant: D 00:00 UTC
US = pd.Timedelta(microseconds=1)


@pytest.fixture(scope="module")
def tiny_spec() -> UseCaseSpec:
    return load_spec(FIXTURES / "tiny.yaml")


def _land(landing: Landing, spec: UseCaseSpec, source: str, rows: list[dict], days: list[dt.date]):
    """Write rows into daily partitions by the `dt` key of each row; every listed day gets a file."""
    cols = spec.sources[source].columns
    types = {"string": pa.string(), "double": pa.float64(), "timestamp": pa.timestamp("us", tz="UTC")}
    schema = pa.schema([(n, types[c.type]) for n, c in cols.items()])
    for day in days:
        day_rows = [{k: v for k, v in r.items() if k != "dt"} for r in rows if r["dt"] == day]
        table = pa.Table.from_pylist(day_rows, schema=schema) if day_rows else schema.empty_table()
        landing.write_partition_file(source, day, "part-0.parquet", table)


def _hand_made(tmp_path: Path, spec: UseCaseSpec) -> Landing:
    """Users and events placed on every boundary the feature rules define."""
    landing = Landing(str(tmp_path / "landing"))
    days = day_range(dt.date(2026, 3, 1), D)
    users = [
        {"user_id": "u1", "created_ts": T - pd.Timedelta(days=60), "tier": "free", "dt": dt.date(2026, 3, 1)},
        {"user_id": "u2", "created_ts": T - pd.Timedelta(days=30), "tier": "paid", "dt": dt.date(2026, 3, 1)},
        {"user_id": "u3", "created_ts": T - pd.Timedelta(days=4, hours=12), "tier": "free", "dt": dt.date(2026, 3, 5)},
        # created exactly at the as-of instant: not yet a user
        {"user_id": "u4", "created_ts": T, "tier": "paid", "dt": dt.date(2026, 3, 9)},
        {"user_id": "u5", "created_ts": T - pd.Timedelta(days=20), "tier": "paid", "dt": dt.date(2026, 3, 1)},
        {"user_id": "u6", "created_ts": T - pd.Timedelta(days=20), "tier": "free", "dt": dt.date(2026, 3, 1)},
        {"user_id": "u7", "created_ts": T - pd.Timedelta(days=9), "tier": "paid", "dt": dt.date(2026, 3, 1)},
        # lands in the as-of day's own partition: read only by later dates
        {"user_id": "u8", "created_ts": T + pd.Timedelta(hours=1), "tier": "free", "dt": D},
    ]
    cancellations = [
        {"user_id": "u5", "cancelled_ts": T - pd.Timedelta(days=2), "dt": dt.date(2026, 3, 8)},  # gone before D
        {"user_id": "u6", "cancelled_ts": T, "dt": D},  # cancels at D: still a user as of D
    ]

    def ev(i, user, ts, value, kind, device, day=None):
        return {"event_id": f"e{i}", "user_id": user, "ts": ts, "value": value, "kind": kind, "device": device,
                "dt": day or ts.date()}

    events = [
        ev(1, "u1", T - pd.Timedelta(days=2), 10.0, "a", "phone"),  # exactly on the 2-day boundary: inside
        ev(2, "u1", T - pd.Timedelta(days=2) - US, 20.0, "b", "desktop"),  # just outside 2 days, inside 5
        ev(3, "u1", T - US, 5.0, "a", "phone"),  # last microsecond before D
        ev(4, "u1", T, 999.0, "c", "desktop", day=dt.date(2026, 3, 9)),  # at D, filed late in D-1: excluded
        ev(5, "u1", T + pd.Timedelta(hours=5), 999.0, "c", "desktop"),  # after D
        ev(6, "u2", T - pd.Timedelta(days=5), 7.0, "c", "desktop"),  # exactly 5 days: inside
        ev(7, "u2", T - pd.Timedelta(days=5) - US, 500.0, "a", "phone", day=dt.date(2026, 3, 5)),  # outside
        ev(8, "u3", T - pd.Timedelta(days=1) + pd.Timedelta(hours=3), 100.0, "b", "phone"),
        ev(9, "u3", T - pd.Timedelta(days=1) + pd.Timedelta(hours=4), 50.0, "b", "phone"),
        ev(10, "u5", T - pd.Timedelta(days=3), 30.0, "a", "phone"),  # u5 left: not in the table
        ev(11, "u6", T - pd.Timedelta(days=3), 1.0, "a", "phone"),
    ]
    events = [e for e in events if e["dt"] in days]
    _land(landing, spec, "users", users, days)
    _land(landing, spec, "cancellations", cancellations, days)
    _land(landing, spec, "events", events, days)
    return landing


def _reference(landing: Landing, spec: UseCaseSpec, as_of: dt.date) -> pd.DataFrame:
    """The feature definitions computed the slow, obvious way with pandas, one entity at a time."""
    import pyarrow.dataset as pads

    def read(source):
        return pads.dataset(f"{landing.url}/{source}", format="parquet", partitioning="hive").to_table().to_pandas()

    t = pd.Timestamp(as_of, tz="UTC")
    users, events, cancels = read("users"), read("events"), read("cancellations")
    gone = set(cancels.loc[cancels.cancelled_ts < t, "user_id"])
    users = users[(users.created_ts < t) & ~users.user_id.isin(gone)].sort_values("user_id")
    agg = spec.features.aggregates[0]
    rows = []
    for user in users.itertuples():
        row = {"user_id": user.user_id, "tier": user.tier, "tenure_days": int((t - user.created_ts).days)}
        mine = events[(events.user_id == user.user_id) & (events.ts < t)]
        for w in agg.windows:
            win = mine[mine.ts >= t - pd.Timedelta(days=w)]
            n = len(win)
            row[f"ev_count_{w}d"] = n
            row[f"ev_sum_value_{w}d"] = float(win.value.sum())
            row[f"ev_mean_value_{w}d"] = float(win.value.mean()) if n else 0.0
            row[f"ev_max_value_{w}d"] = float(win.value.max()) if n else 0.0
            row[f"ev_distinct_kind_{w}d"] = win.kind.nunique()
            row[f"ev_distinct_device_{w}d"] = win.device.nunique()
            row[f"ev_share_kind_a_{w}d"] = float((win.kind == "a").mean()) if n else 0.0
        longest = max(agg.windows)
        recent = mine[mine.ts >= t - pd.Timedelta(days=longest)]
        row["ev_days_since_last"] = (t - recent.ts.max()).total_seconds() / 86400 if len(recent) else longest + 1.0
        n2, n5 = row["ev_count_2d"], row["ev_count_5d"]
        row["ev_trend_2d_5d"] = (n2 / 2) / (n5 / 5) if n5 else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def test_feature_values_match_an_independent_calculation(spark, tiny_spec, tmp_path):
    landing = _hand_made(tmp_path, tiny_spec)
    got = build_features(spark, tiny_spec, Path(landing.url), D).toPandas().sort_values("user_id")
    want = _reference(landing, tiny_spec, D)
    assert list(got.user_id) == ["u1", "u2", "u3", "u6", "u7"]  # u4 not yet, u5 gone, u8 after D
    assert list(got.columns) == ["user_id", AS_OF_COLUMN, *tiny_spec.feature_columns()]
    assert (got[AS_OF_COLUMN] == D).all()
    got = got.drop(columns=[AS_OF_COLUMN]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want[got.columns], check_dtype=False, atol=1e-9, rtol=0)
    # spot checks a reader can verify by hand against the events above
    u1 = got.set_index("user_id").loc["u1"]
    assert (u1.ev_count_2d, u1.ev_count_5d, u1.ev_max_value_5d) == (2, 3, 20.0)
    assert u1.ev_days_since_last == pytest.approx(1e-6 / 86400, abs=5e-12)  # one microsecond, in days
    assert got.set_index("user_id").loc["u7"].ev_days_since_last == 6.0  # no event: longest window + 1


def test_features_of_d_ignore_everything_at_or_after_d(spark, churn_spec, landing_copy, small_as_of):
    """Property: add, move and alter events, churn and customers at or after D; D's features do not change."""
    SMALL_AS_OF = small_as_of
    raw = Path(landing_copy.url)
    before = build_features(spark, churn_spec, raw, SMALL_AS_OF).toPandas().sort_values("customer_id")
    rng = np.random.default_rng(0)
    t = pd.Timestamp(SMALL_AS_OF, tz="UTC")
    ids = before.customer_id.to_numpy()
    for trial in range(3):
        n = 200
        offsets = pd.to_timedelta(rng.uniform(0, 3 * 86400, n), unit="s")  # at or after D
        offsets = offsets.where(np.arange(n) > 0, pd.Timedelta(0))  # one event exactly at D
        chosen = rng.choice(ids, n)
        late = pa.table({
            "transaction_id": [f"X{trial}-{i}" for i in range(n)], "customer_id": chosen,
            "event_ts": pa.array(list(t + offsets), pa.timestamp("us", tz="UTC")),
            "amount": rng.uniform(1, 20000, n), "channel": rng.choice(["web", "app", "store"], n),
            # a category never seen before D: it is in the files' dictionaries, so the distinct-count mask gets a
            # bit for it, which no event in D's windows sets
            "category": rng.choice(["travel", "crypto", f"new-{trial}"], n),
        })
        # filed in D-1 (a late-labelled file) and in D's own partition
        landing_copy.write_partition_file("transactions", SMALL_AS_OF - dt.timedelta(days=1), f"late-{trial}.parquet", late)
        landing_copy.write_partition_file("transactions", SMALL_AS_OF, f"late-{trial}.parquet", late)
        churn = pa.table({"customer_id": chosen[:20], "churn_ts": pa.array(list(t + offsets[:20]), pa.timestamp("us", tz="UTC"))})
        landing_copy.write_partition_file("churn_events", SMALL_AS_OF - dt.timedelta(days=1), f"late-{trial}.parquet", churn)
        tickets = pa.table({"ticket_id": [f"K{trial}-{i}" for i in range(n)], "customer_id": chosen,
                            "opened_ts": pa.array(list(t + offsets), pa.timestamp("us", tz="UTC")),
                            "reason": rng.choice(["cancellation", "billing"], n)})
        landing_copy.write_partition_file("support_tickets", SMALL_AS_OF - dt.timedelta(days=1), f"late-{trial}.parquet", tickets)
        newcomers = pa.table({"customer_id": [f"N{trial}-{i}" for i in range(5)],
                              "signup_ts": pa.array([t + pd.Timedelta(hours=i) for i in range(5)], pa.timestamp("us", tz="UTC")),
                              "plan": ["basic"] * 5, "region": ["north"] * 5, "age_band": ["18-24"] * 5})
        landing_copy.write_partition_file("customers", SMALL_AS_OF - dt.timedelta(days=1), f"late-{trial}.parquet", newcomers)
        after = build_features(spark, churn_spec, raw, SMALL_AS_OF).toPandas().sort_values("customer_id")
        pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))

    # control: the same kind of change one microsecond before D does change the features
    early = late.set_column(2, "event_ts", pa.array([t - US] * n, pa.timestamp("us", tz="UTC")))
    landing_copy.write_partition_file("transactions", SMALL_AS_OF - dt.timedelta(days=1), "early.parquet", early)
    changed = build_features(spark, churn_spec, raw, SMALL_AS_OF).toPandas().sort_values("customer_id")
    assert not changed.reset_index(drop=True).equals(before.reset_index(drop=True))


def test_distinct_values_read_from_the_files_give_the_counts_a_spark_job_gives(spark, tiny_spec, tmp_path,
                                                                               monkeypatch):
    import batchml.features as features

    landing = _hand_made(tmp_path, tiny_spec)
    # every value in the window's files (the hand-made events use all three kinds)
    partitions = features._partition_dirs(Path(landing.url), "events", day_range(D - dt.timedelta(days=5), D))
    assert features.string_values(partitions, "kind", features.MAX_MASK_VALUES) == ["a", "b", "c"]
    from_files = build_features(spark, tiny_spec, Path(landing.url), D).toPandas()
    listed_by_spark = []
    monkeypatch.setattr(features, "string_values", lambda *a: listed_by_spark.append(a[1]))
    from_spark = build_features(spark, tiny_spec, Path(landing.url), D).toPandas()
    assert listed_by_spark == ["kind", "device"]
    pd.testing.assert_frame_equal(from_files, from_spark)


def test_string_values_reads_dictionaries_plain_pages_and_nulls_and_declines_what_it_cannot_read(tmp_path):
    import pyarrow.parquet as pq

    from batchml.storage import string_values

    day1, day2 = tmp_path / "dt=2026-03-01", tmp_path / "dt=2026-03-02"
    day1.mkdir()
    day2.mkdir()
    pq.write_table(pa.table({"c": ["x", None, "y", "x"], "n": [1.0, 2.0, 3.0, 4.0]}), day1 / "part-0.parquet")
    pq.write_table(pa.table({"c": ["z", "x"], "n": [5.0, 6.0]}), day2 / "part-0.parquet", use_dictionary=False)
    folders = [str(day1), str(day2)]
    assert string_values(folders, "c", 10) == ["x", "y", "z"]  # null is bit 0 whether or not it occurs
    assert string_values([str(day1)], "c", 10) == ["x", "y"]
    assert string_values(folders, "n", 10) is None  # not strings: the Spark job lists them
    assert string_values(folders, "missing", 10) is None
    many = [f"v{i}" for i in range(15)]
    pq.write_table(pa.table({"c": many, "n": [0.0] * len(many)}), day2 / "part-1.parquet")
    assert len(string_values(folders, "c", 10)) > 10  # too many for a mask: the fallback plan
    (day1 / "part-9.parquet").write_bytes(b"not parquet")
    assert string_values(folders, "c", 10) is None


def test_feature_job_writes_one_staged_file(spark, churn_spec, small_landing, small_as_of, tmp_path):
    result = run_feature_job(spark, churn_spec, Path(small_landing.url), small_as_of, tmp_path / "stage")
    assert Path(result.staged_file).parent == tmp_path / "stage"
    assert result.rows > 400
    assert result.columns == ["customer_id", AS_OF_COLUMN, *churn_spec.feature_columns()]


def test_custom_feature_function_adds_declared_columns(spark, tiny_spec, tmp_path):
    landing = _hand_made(tmp_path, tiny_spec)
    data = tiny_spec.model_dump()
    data["features"]["custom"] = {"function": "custom_features:late_night_share", "columns": {"ev_night_share_5d": "share"}}
    spec = UseCaseSpec.model_validate(data)
    got = build_features(spark, spec, Path(landing.url), D).toPandas().set_index("user_id")
    assert "ev_night_share_5d" in spec.feature_columns()
    # u3's two events were at 03:00 and 04:00 UTC; u1's last event at 23:59:59
    assert got.loc["u3", "ev_night_share_5d"] == 1.0
    assert got.loc["u7", "ev_night_share_5d"] == 0.0

    data["features"]["custom"] = {"function": "custom_features:wrong_columns", "columns": {"x": "count"}}
    with pytest.raises(SpecError, match=r"returned columns \['user_id', 'surprise'\]"):
        build_features(spark, UseCaseSpec.model_validate(data), Path(landing.url), D)
    data["features"]["custom"] = {"function": "custom_features:nope", "columns": {"x": "count"}}
    with pytest.raises(SpecError, match="cannot import 'custom_features:nope'"):
        build_features(spark, UseCaseSpec.model_validate(data), Path(landing.url), D)


def test_missing_window_partition_is_a_clear_error(spark, churn_spec, landing_copy, small_as_of):
    import shutil

    shutil.rmtree(Path(landing_copy.url) / "transactions" / "dt=2026-03-01")
    with pytest.raises(LandingError, match=r"1 partition\(s\) of 'transactions'.*dt=2026-03-01"):
        build_features(spark, churn_spec, Path(landing_copy.url), small_as_of)


def test_a_task_session_leaves_a_session_already_running_in_the_process_running(spark):
    # a DAG run inside a test (dag.test) or a notebook must not stop the session it found running
    from batchml.spark import spark_session

    with spark_session("local[2]", {}, "a-task") as session:
        assert session.sparkContext is spark.sparkContext
    assert spark.range(3).count() == 3


def test_a_failed_snapshot_check_stops_training_snapshots_before_anything_later_is_published(
        spark, small_training_spec, training_landing, tmp_path):
    """The training DAG's snapshot step checks each snapshot while the next one's Spark job runs: a check that fails
    is still raised, the snapshots before it stay published, and nothing from it on is."""
    from batchml.datasets import ensure_snapshots
    from batchml.errors import DataValidationError
    from batchml.partitions import snapshot_plan
    from batchml.settings import Settings
    from batchml.storage import feature_partition_dir
    from sample_data import SMALL_TRAINING_DATE

    plan = snapshot_plan(small_training_spec, SMALL_TRAINING_DATE).all
    data = small_training_spec.model_dump()
    data["expectations"]["features"] = [*data["expectations"]["features"], {  # the third snapshot fails this
        "expectation": "expect_column_values_to_be_in_set",
        "kwargs": {"column": AS_OF_COLUMN, "value_set": [d.isoformat() for d in plan[:2]]}}]
    spec = UseCaseSpec.model_validate(data)
    settings = Settings(home=tmp_path / "home", landing_url=training_landing.url)
    with pytest.raises(DataValidationError, match=f"expect_column_values_to_be_in_set on {AS_OF_COLUMN}"):
        ensure_snapshots(spark, spec, settings, SMALL_TRAINING_DATE, "failing")
    published = [d for d in plan
                 if (feature_partition_dir(settings.features_root, "churn", d) / "part-0.parquet").exists()]
    assert published == plan[:2]
