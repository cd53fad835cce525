"""Errors are classified: bad data, bad configuration and anything a retry cannot fix fail at once; transient ones
(network, locks, timeouts) are left to Airflow's retries. Real exceptions of the libraries involved, not look-alikes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from batchml.errors import (
    ConfigurationError,
    DataValidationError,
    LandingError,
    SpecError,
    TransientError,
    is_permanent,
    what_to_do,
)


def _raised(func):
    try:
        func()
    except Exception as exc:  # noqa: BLE001 - the exception itself is what is tested
        return exc
    raise AssertionError("nothing was raised")


def test_batchml_errors_are_permanent_unless_transient():
    for exc in (SpecError("x"), LandingError("x"), DataValidationError("x"), ConfigurationError("x")):
        assert is_permanent(exc)
    assert not is_permanent(TransientError("the tracking server did not answer"))


def test_a_driver_that_is_not_installed_is_permanent():
    import sqlalchemy as sa

    exc = _raised(lambda: sa.create_engine("mysql+pymysql://u:p@db/x"))
    assert is_permanent(exc) and "install the missing package" in what_to_do(exc)


def test_a_missing_airflow_connection_is_permanent(airflow_db):
    from airflow.sdk import BaseHook

    exc = _raised(lambda: BaseHook.get_connection("no_such_connection"))
    assert is_permanent(exc) and "define the Airflow connection" in what_to_do(exc)


def test_a_locked_sqlite_database_is_transient(tmp_path):
    import sqlite3

    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    exc = _raised(lambda: other.execute("INSERT INTO t VALUES (1)"))
    assert "database is locked" in str(exc) and not is_permanent(exc)


def test_an_unreachable_endpoint_is_transient(monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          config=__import__("botocore.config").config.Config(retries={"max_attempts": 1},
                                                                             connect_timeout=1))
    exc = _raised(lambda: client.list_buckets())
    assert not is_permanent(exc), repr(exc)


def test_a_corrupt_parquet_file_read_by_spark_is_permanent(spark, tmp_path):
    bad = tmp_path / "part-0.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    exc = _raised(lambda: spark.read.parquet(str(bad)).collect())
    assert is_permanent(exc), str(exc)[:500]


@pytest.mark.spark
def test_an_invalid_driver_memory_setting_is_permanent():
    """The JVM refuses `spark.driver.memory: lots`: no retry will start it (a fresh process: one JVM per process)."""
    probe = ("from batchml.spark import start_spark\n"
             "from batchml.errors import is_permanent, what_to_do\n"
             "try:\n    start_spark('local[1]', {'spark.driver.memory': 'lots'})\n"
             "except Exception as exc:\n    print('PERMANENT' if is_permanent(exc) else 'TRANSIENT', what_to_do(exc))\n"
             "else:\n    print('STARTED')\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300).stdout
    assert "PERMANENT" in out and "spark.driver.memory" in out, out


def test_the_step_wrapper_fails_permanent_errors_at_once_and_lets_transient_ones_retry():
    from airflow.sdk.exceptions import AirflowFailException

    from batchml.pipelines.common import step

    @step
    def corrupt():
        raise OSError("Could not read footer for file part-0.parquet")

    @step
    def locked():
        raise RuntimeError("database is locked")

    with pytest.raises(AirflowFailException, match="not retried: a retry cannot fix this"):
        corrupt()
    with pytest.raises(RuntimeError, match="database is locked"):
        locked()
