"""The landing zone on S3, through a real HTTP endpoint (moto's server mode, started by the suite)."""

import datetime as dt

import pyarrow as pa
import pytest

from batchml.generate import GeneratorConfig, generate
from batchml.storage import Landing, read_partition

pytestmark = pytest.mark.s3
D = dt.date(2026, 1, 1)


def test_generator_lands_on_s3_and_listing_matches(s3_env, tmp_path):
    landing = Landing(f"s3://{s3_env}/raw/landing")
    summary = generate(GeneratorConfig(customers=100, days=5, seed=1), landing)
    assert summary.rows["customers"] > 0
    assert landing.landed_days("transactions") == [D + dt.timedelta(days=i) for i in range(5)]
    assert landing.missing_partitions("transactions", [D, D + dt.timedelta(days=9)]) == [D + dt.timedelta(days=9)]
    again = generate(GeneratorConfig(customers=100, days=5, seed=1), landing)
    assert again.skipped  # the marker object on S3 remembers the config


def test_mirror_syncs_by_etag_and_follows_deletions(s3_env, tmp_path, caplog):
    from batchml.storage import s3_client

    landing = Landing(f"s3://{s3_env}/landing")
    landing.write_partition_file("src", D, "part-0.parquet", pa.table({"a": [1, 2]}))
    landing.write_partition_file("src", D, "part-1.parquet", pa.table({"a": [3]}))
    mirror = tmp_path / "mirror"
    root = landing.local_view({"src": [D]}, mirror)
    assert read_partition(root, "src", D).num_rows == 3

    caplog.set_level("INFO", logger="batchml.storage")
    landing.local_view({"src": [D]}, mirror)
    assert "(0 files downloaded)" in caplog.text  # unchanged files are not fetched again

    landing.write_partition_file("src", D, "part-0.parquet", pa.table({"a": [10, 20, 30]}))  # re-landed
    s3_client().delete_object(Bucket=s3_env, Key="landing/src/dt=2026-01-01/part-1.parquet")
    landing.local_view({"src": [D]}, mirror)
    assert sorted(read_partition(root, "src", D).column("a").to_pylist()) == [10, 20, 30]

    s3_client().delete_object(Bucket=s3_env, Key="landing/src/dt=2026-01-01/part-0.parquet")
    landing.local_view({"src": [D]}, mirror)
    assert not (root / "src" / "dt=2026-01-01").exists()


def test_mirror_downloads_many_partitions_and_a_failed_download_leaves_no_partial_file(s3_env, tmp_path,
                                                                                       monkeypatch):
    landing = Landing(f"s3://{s3_env}/many")
    days = [D + dt.timedelta(days=i) for i in range(40)]
    for i, day in enumerate(days):
        landing.write_partition_file("src", day, "part-0.parquet", pa.table({"a": [i]}))
    mirror = tmp_path / "mirror"
    root = landing.local_view({"src": days}, mirror)
    assert [read_partition(root, "src", d).column("a").to_pylist() for d in days] == [[i] for i in range(40)]

    # a file listed but gone by the time it is fetched: the mirror run fails, and no half-written file is left
    listed = Landing.list_source
    monkeypatch.setattr(Landing, "list_source", lambda self, source: {
        **listed(self, source), D + dt.timedelta(days=99): {"part-0.parquet": "gone"}})
    with pytest.raises(Exception, match="404|Not Found|NoSuchKey"):
        landing.local_view({"src": [*days, D + dt.timedelta(days=99)]}, mirror)
    assert not list(mirror.rglob("*.tmp"))
    assert read_partition(root, "src", days[0]).column("a").to_pylist() == [0]
