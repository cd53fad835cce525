"""The feature DAG run by a real Airflow (dag.test) on small generated data: idempotent, S3-capable, fail-closed."""

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.airflow, pytest.mark.spark]


def _run(spec, settings, day: dt.date, conf: dict | None = None):
    """Build the DAG with these settings and run it for `day`; returns {task_id: state} and the DAG run."""
    from airflow.utils.session import create_session

    from batchml.pipelines.features import build_dag

    dag = build_dag(spec, settings)
    run = dag.test(logical_date=dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC), run_conf=conf)
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
    return run, states


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_feature_dag_publishes_and_a_rerun_replaces_without_duplicates(
    airflow_db, churn_spec, small_landing, small_as_of, isolated_home
):
    from batchml.storage import feature_partition_dir, read_manifest

    settings = isolated_home(landing_url=small_landing.url)
    run, states = _run(churn_spec, settings, small_as_of)
    assert run.state == "success", states
    part = feature_partition_dir(settings.features_root, "churn", small_as_of)
    first = pd.read_parquet(part / "part-0.parquet")
    manifest = read_manifest(part)
    assert manifest["rows"] == len(first) > 400
    assert first.customer_id.is_unique
    assert Path(manifest["data_docs"].removeprefix("file://")).exists()

    run2, states2 = _run(churn_spec, settings, small_as_of)
    assert run2.state == "success", states2
    assert sorted(p.name for p in part.iterdir()) == ["_manifest.json", "part-0.parquet"]
    second = pd.read_parquet(part / "part-0.parquet")
    pd.testing.assert_frame_equal(first, second)  # same inputs, same partition
    assert read_manifest(part)["run_id"] != manifest["run_id"]
    assert not any((settings.staging_root / "features" / "churn").glob("dt=*")), "staging must be cleaned up"


def test_bad_raw_data_fails_the_run_and_keeps_the_published_partition(
    airflow_db, churn_spec, landing_copy, small_as_of, isolated_home
):
    from batchml.storage import feature_partition_dir

    settings = isolated_home(landing_url=landing_copy.url)
    run, _ = _run(churn_spec, settings, small_as_of)
    assert run.state == "success"
    published = feature_partition_dir(settings.features_root, "churn", small_as_of) / "part-0.parquet"
    before = _sha(published)

    newest = next((Path(landing_copy.url) / "transactions" / f"dt={small_as_of - dt.timedelta(days=1)}").glob("*.parquet"))
    table = pq.read_table(newest)
    amounts = table.column("amount").to_pylist()
    amounts[0] = -50.0
    pq.write_table(table.set_column(table.schema.get_field_index("amount"), "amount", pa.array(amounts)), newest)

    run, states = _run(churn_spec, settings, small_as_of)
    assert run.state == "failed"
    assert states["validate_raw"] == "failed"
    assert states["build_features"] == "upstream_failed"
    assert states["publish_features"] == "upstream_failed"
    assert _sha(published) == before, "a failed run must leave the previous partition untouched"


def test_a_missing_spark_connection_fails_at_once_without_retries(
    airflow_db, churn_spec, small_landing, small_as_of, isolated_home, monkeypatch
):
    """Retrying cannot create a connection: the task fails on its first try, with what to do, and publishes
    nothing (the DAG's tasks have retries; this error does not use them)."""
    import time

    from airflow.utils.session import create_session

    settings = isolated_home(landing_url=small_landing.url, spark_conn_id="no_such_spark")
    started = time.perf_counter()
    run, states = _run(churn_spec, settings, small_as_of)
    assert run.state == "failed" and states["build_features"] == "failed", states
    with create_session() as session:
        ti = next(t for t in run.get_task_instances(session=session) if t.task_id == "build_features")
        assert ti.try_number == 1 and ti.max_tries >= 2, (ti.try_number, ti.max_tries)
    assert time.perf_counter() - started < 600, "no retry delay was waited"
    assert not (settings.features_root / "churn").exists()


def test_as_of_param_overrides_the_logical_date(airflow_db, churn_spec, small_landing, small_as_of, isolated_home):
    from batchml.storage import feature_partition_dir

    settings = isolated_home(landing_url=small_landing.url)
    other = small_as_of - dt.timedelta(days=3)
    run, states = _run(churn_spec, settings, small_as_of, conf={"as_of": other.isoformat()})
    assert run.state == "success", states
    assert (feature_partition_dir(settings.features_root, "churn", other) / "part-0.parquet").exists()
    assert not feature_partition_dir(settings.features_root, "churn", small_as_of).exists()


@pytest.mark.s3
def test_feature_dag_reads_an_s3_landing_zone(airflow_db, churn_spec, small_config, small_as_of, s3_env, isolated_home):
    import dataclasses

    from batchml.generate import generate
    from batchml.storage import Landing, feature_partition_dir, read_manifest

    landing = Landing(f"s3://{s3_env}/landing")
    generate(dataclasses.replace(small_config), landing)
    settings = isolated_home(landing_url=landing.url)
    run, states = _run(churn_spec, settings, small_as_of)
    assert run.state == "success", states
    manifest = read_manifest(feature_partition_dir(settings.features_root, "churn", small_as_of))
    assert manifest["rows"] > 400
    mirror = settings.staging_root / "landing_mirror" / s3_env / "landing"
    assert (mirror / "transactions" / f"dt={small_as_of - dt.timedelta(days=1)}").is_dir()
