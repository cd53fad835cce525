"""Landing zone listing and reading, and the atomic publish of lake partitions."""

import datetime as dt
import json
import os

import pyarrow as pa
import pytest

from batchml.errors import LandingError, PublishError
from batchml.storage import (
    Landing,
    day_range,
    feature_partition_dir,
    publish_file,
    read_manifest,
    read_partition,
    single_parquet_file,
)

D = dt.date(2026, 3, 1)


def _table(n: int) -> pa.Table:
    return pa.table({"id": [f"x{i}" for i in range(n)], "v": list(range(n))})


def test_day_range_includes_both_ends():
    assert day_range(D, D + dt.timedelta(days=2)) == [D, D + dt.timedelta(days=1), D + dt.timedelta(days=2)]


def test_local_landing_lists_partitions_and_missing_days(tmp_path):
    landing = Landing(str(tmp_path))
    landing.write_partition_file("src", D, "part-0.parquet", _table(3))
    landing.write_partition_file("src", D + dt.timedelta(days=2), "part-0.parquet", _table(0))
    assert landing.landed_days("src") == [D, D + dt.timedelta(days=2)]
    assert landing.landed_days("src", before=D + dt.timedelta(days=1)) == [D]
    assert landing.missing_partitions("src", day_range(D, D + dt.timedelta(days=2))) == [D + dt.timedelta(days=1)]
    assert landing.local_view({"src": [D]}, tmp_path / "mirror") == tmp_path  # local: no copy
    assert not list((tmp_path / "src" / "dt=2026-03-01").glob(".*tmp")), "temp files must not remain"


def test_read_partition_reports_missing_and_corrupt_files(tmp_path):
    landing = Landing(str(tmp_path))
    with pytest.raises(LandingError, match="has not landed"):
        read_partition(tmp_path, "src", D)
    landing.write_partition_file("src", D, "part-0.parquet", _table(2))
    assert read_partition(tmp_path, "src", D).num_rows == 2
    (tmp_path / "src" / "dt=2026-03-01" / "part-1.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LandingError, match=r"part-1.parquet: not a readable Parquet file.*Re-land"):
        read_partition(tmp_path, "src", D)


def test_publish_replaces_atomically_and_keeps_one_file(tmp_path):
    target = feature_partition_dir(tmp_path / "features", "uc", D)
    for rows in (3, 5):
        staged = tmp_path / f"staged-{rows}.parquet"
        import pyarrow.parquet as pq

        pq.write_table(_table(rows), staged)
        publish_file(staged, target, {"rows": rows})
    files = sorted(p.name for p in target.iterdir())
    assert files == ["_manifest.json", "part-0.parquet"]
    import pyarrow.parquet as pq

    assert pq.read_table(target / "part-0.parquet").num_rows == 5
    assert read_manifest(target) == {"rows": 5}


def test_failed_publish_leaves_the_previous_partition_intact(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    target = tmp_path / "dt=2026-03-01"
    first = tmp_path / "first.parquet"
    pq.write_table(_table(3), first)
    publish_file(first, target, {"rows": 3})
    second = tmp_path / "second.parquet"
    pq.write_table(_table(7), second)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    from batchml import storage

    monkeypatch.setattr(os, "link", no_space)
    monkeypatch.setattr(storage.shutil, "copyfile", no_space)
    with pytest.raises(PublishError, match="previous partition is intact"):
        publish_file(second, target, {"rows": 7})
    monkeypatch.undo()
    assert pq.read_table(target / "part-0.parquet").num_rows == 3
    assert json.loads((target / "_manifest.json").read_text()) == {"rows": 3}
    assert second.exists(), "the staged file survives, for a retry"


def test_single_parquet_file_refuses_ambiguous_staging(tmp_path):
    with pytest.raises(PublishError, match="found 0"):
        single_parquet_file(tmp_path)


@pytest.mark.parametrize("crash_at", ["data_moved", "manifest_written", "swapped"])
def test_a_publish_killed_at_any_step_leaves_data_and_manifest_together(crash_at, tmp_path, monkeypatch):
    """An injected failure between each pair of steps: readers see the previous data with its manifest, or the new
    data with its manifest, and no temporary file is ever inside the published folder."""
    import pyarrow.parquet as pq

    from batchml import storage

    target = tmp_path / "features" / "uc" / "dt=2026-03-01"
    first = tmp_path / "first.parquet"
    pq.write_table(_table(3), first)
    publish_file(first, target, {"rows": 3})
    second = tmp_path / "second.parquet"
    pq.write_table(_table(7), second)
    real_replace, real_swap, real_rmtree = os.replace, storage.swap_in_folder, storage.shutil.rmtree

    def fail(*args, **kwargs):
        raise OSError(5, f"killed after {crash_at} (injected)")

    if crash_at == "data_moved":  # the data file is in the temporary folder, the manifest not yet
        monkeypatch.setattr(storage.Path, "write_text", fail)
    elif crash_at == "manifest_written":  # both are in the temporary folder, not swapped in yet
        monkeypatch.setattr(storage, "swap_in_folder", fail)
    else:  # swapped in; the previous folder not yet deleted (a kill, not an exception: nothing cleans up)
        monkeypatch.setattr(storage.shutil, "rmtree", lambda *a, **k: None)
    try:
        publish_file(second, target, {"rows": 7})
    except PublishError:
        assert crash_at != "swapped"
    monkeypatch.undo()
    rows = pq.read_table(target / "part-0.parquet").num_rows
    assert (rows, read_manifest(target)) in ((3, {"rows": 3}), (7, {"rows": 7}))
    assert (rows == 7) == (crash_at == "swapped")
    assert sorted(p.name for p in target.iterdir()) == ["_manifest.json", "part-0.parquet"]
    # whatever a killed publish left next to the partition is removed by the next publish
    third = tmp_path / "third.parquet"
    pq.write_table(_table(2), third)
    publish_file(third, target, {"rows": 2})
    assert sorted(p.name for p in target.parent.iterdir()) == ["dt=2026-03-01"]
    assert read_manifest(target) == {"rows": 2}
    assert (real_replace, real_swap, real_rmtree) == (os.replace, storage.swap_in_folder, storage.shutil.rmtree)


def test_landing_a_day_replaces_it_whole_whatever_the_files_are_named(tmp_path):
    import pyarrow.parquet as pq

    landing = Landing(str(tmp_path / "landing"))
    landing.write_partition_file("src", D, "part-00000.parquet", _table(4))  # e.g. the generator's names
    landing.write_partition_file("src", D, "part-00001.parquet", _table(6))
    location, replaced = landing.replace_partition("src", D, _table(5))
    folder = tmp_path / "landing" / "src" / "dt=2026-03-01"
    assert replaced == 10 and location == str(folder / "part-0.parquet")
    assert sorted(p.name for p in folder.iterdir()) == ["part-0.parquet"]
    assert pq.read_table(folder).num_rows == 5
    assert sorted(p.name for p in folder.parent.iterdir()) == ["dt=2026-03-01"]  # no temporary folder left
    _, replaced = landing.replace_partition("src", D + dt.timedelta(days=1), _table(2))  # a new day
    assert replaced == 0


def test_s3_client_signs_with_the_keys_in_the_environment_now(monkeypatch):
    """boto3's default session keeps the first keys it resolved: a client made after the environment changed
    (another stack, rotated keys) must sign with the new ones."""
    from batchml.storage import s3_client

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    assert s3_client()._get_credentials().access_key == "first-key"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated-key")
    assert s3_client()._get_credentials().access_key == "rotated-key"
