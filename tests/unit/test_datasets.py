"""Training sets: point in time, split by time, checked, on a synthetic lake (no Spark)."""

import datetime as dt
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchml.datasets import LABEL, TrainingDataError, build_training_set, label_snapshots
from batchml.partitions import SPLITS
from batchml.specs import UseCaseSpec
from batchml.storage import Landing, feature_partition_dir

T = dt.date(2026, 6, 1)


def _with(spec: UseCaseSpec, **training) -> UseCaseSpec:
    data = spec.model_dump()
    for key, value in training.items():
        data["training"][key] = value
    return UseCaseSpec.model_validate(data)


def test_labels_use_the_horizon_window_and_only_events_before_the_training_date(tiny_spec, tmp_path):
    landing = Landing(str(tmp_path))
    s = dt.date(2026, 5, 1)
    t0 = pd.Timestamp(s, tz="UTC")
    rows = [
        ("in_first_instant", t0), ("in_last_instant", t0 + pd.Timedelta(days=7) - pd.Timedelta(microseconds=1)),
        ("at_horizon_end", t0 + pd.Timedelta(days=7)), ("before_snapshot", t0 - pd.Timedelta(seconds=1)),
    ]
    schema = pa.schema([("user_id", pa.string()), ("cancelled_ts", pa.timestamp("us", tz="UTC"))])
    for day in pd.date_range("2026-04-29", "2026-05-20").date:
        day_rows = [{"user_id": u, "cancelled_ts": ts} for u, ts in rows if ts.date() == day]
        landing.write_partition_file("cancellations", day, "part-0.parquet", pa.Table.from_pylist(day_rows, schema=schema))
    got = label_snapshots(tiny_spec, tmp_path, [s], training_date=dt.date(2026, 5, 20))
    assert sorted(got.user_id) == ["in_first_instant", "in_last_instant"]
    with pytest.raises(TrainingDataError, match="have not matured"):
        label_snapshots(tiny_spec, tmp_path, [s], training_date=dt.date(2026, 5, 7))


def test_training_set_is_split_by_time_and_records_lineage(tiny_training_set, tiny_spec):
    ts = tiny_training_set
    dates = {name: set(ts.frames[name]["as_of_date"]) for name in SPLITS}
    assert max(dates["train"]) < min(dates["valid"]) and max(dates["valid"]) < min(dates["test"])
    lin = ts.lineage
    assert lin["rows"] == {name: len(ts.frames[name]) for name in SPLITS}
    assert set(lin["partitions"]) == set(SPLITS) and all(p.endswith("part-0.parquet") for p in lin["partitions"]["test"])
    assert 0.05 < lin["label_rate"]["train"] < 0.5
    assert len(lin["data_hash"]) == 64
    assert ts.features[0] == "tier" and ts.categorical == ["tier"]


def test_future_label_events_and_future_partitions_do_not_change_an_earlier_training_set(tiny_spec, tiny_lake, tmp_path):
    """Leakage: events after the training date, or features of later dates, cannot change T's training set."""
    features_root, raw_root = tiny_lake
    before = build_training_set(tiny_spec, features_root, raw_root, T)
    shutil.copytree(features_root, tmp_path / "features")
    shutil.copytree(raw_root, tmp_path / "landing")
    landing = Landing(str(tmp_path / "landing"))
    schema = pa.schema([("user_id", pa.string()), ("cancelled_ts", pa.timestamp("us", tz="UTC"))])
    everyone = pd.concat(before.frames.values())["user_id"].unique().tolist()
    for day in (T, T + dt.timedelta(days=3)):  # every user "cancels" at or after T
        stamp = pd.Timestamp(day, tz="UTC")
        landing.write_partition_file("cancellations", day, "late.parquet",
                                     pa.table({"user_id": everyone, "cancelled_ts": pa.array([stamp] * len(everyone), schema.field(1).type)}))
    later = T + dt.timedelta(days=7)
    part = feature_partition_dir(tmp_path / "features", tiny_spec.name, later)
    part.mkdir(parents=True)
    before.frames["test"].drop(columns=[LABEL]).to_parquet(part / "part-0.parquet")
    after = build_training_set(tiny_spec, tmp_path / "features", tmp_path / "landing", T)
    assert after.lineage["data_hash"] == before.lineage["data_hash"]
    for name in SPLITS:
        pd.testing.assert_frame_equal(before.frames[name], after.frames[name])
    # control: the same events one second before T, inside the newest test window, do change it
    stamp = pd.Timestamp(T, tz="UTC") - pd.Timedelta(seconds=1)
    landing.write_partition_file("cancellations", T - dt.timedelta(days=1), "early.parquet",
                                 pa.table({"user_id": everyone, "cancelled_ts": pa.array([stamp] * len(everyone), schema.field(1).type)}))
    changed = build_training_set(tiny_spec, tmp_path / "features", tmp_path / "landing", T)
    assert changed.lineage["data_hash"] != before.lineage["data_hash"]


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("too_few_rows", "fewer than training.min_rows"),
        ("single_class", "single-class label"),
        ("nan", "NaN or infinite feature values: {'ev_sum_value_2d': 3}"),
        ("inf", "NaN or infinite feature values: {'ev_max_value_5d': 1}"),
        ("missing_column", "feature columns ['ev_trend_2d_5d'] are missing"),
        ("missing_partition", "feature partitions missing for snapshots ['2026-05-25']"),
    ],
)
def test_bad_training_data_fails_clearly(damage, fragment, tiny_spec, tiny_lake, tmp_path):
    features_root, raw_root = tiny_lake
    shutil.copytree(features_root, tmp_path / "features")
    spec = tiny_spec
    newest = feature_partition_dir(tmp_path / "features", tiny_spec.name, dt.date(2026, 5, 25)) / "part-0.parquet"
    frame = pd.read_parquet(newest)
    if damage == "too_few_rows":
        spec = _with(tiny_spec, min_rows=5000)
    elif damage == "single_class":
        shutil.copytree(raw_root, tmp_path / "landing")
        empty = pa.table({"user_id": pa.array([], pa.string()), "cancelled_ts": pa.array([], pa.timestamp("us", tz="UTC"))})
        for f in (tmp_path / "landing" / "cancellations").glob("dt=*/*.parquet"):
            if f.parent.name >= "dt=2026-05-18":  # nobody cancels during the test window
                pq.write_table(empty, f)
        raw_root = tmp_path / "landing"
    elif damage == "nan":
        frame.loc[:2, "ev_sum_value_2d"] = np.nan
    elif damage == "inf":
        frame.loc[0, "ev_max_value_5d"] = np.inf
    elif damage == "missing_column":
        frame = frame.drop(columns=["ev_trend_2d_5d"])
    if damage == "missing_partition":
        shutil.rmtree(newest.parent)
    else:
        frame.to_parquet(newest, index=False)
    with pytest.raises(TrainingDataError, match=re.escape(fragment)):
        build_training_set(spec, tmp_path / "features", raw_root, T)
