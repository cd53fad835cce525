"""Tasks as clients of a Spark Connect server (`batchml spark-server`, a real one in its own process): the feature DAG
through it publishes the table a local session builds, with a token; a wrong token or a closed port fails the task
at once, saying what to do; the server stops cleanly on SIGTERM."""

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.timeout(900)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connect_server(tmp_root):
    """`batchml spark-server` on a free port with a token; yields (port, token, its output so far)."""
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_root / f"spark-server-{port}.log"
    env = {**os.environ, "SPARK_CONNECT_AUTHENTICATE_TOKEN": token, "BATCHML_HOME": str(tmp_root / "connect-home")}
    cmd = [str(Path(sys.executable).with_name("batchml")), "spark-server", "--master", "local[1]", "--port", str(port),
           "--conf", "spark.driver.memory=1g"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True)
    deadline = time.monotonic() + 180
    while "ready: sc://localhost" not in log.read_text():
        assert proc.poll() is None, f"spark-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"spark-server not ready after 180 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    yield port, token, log
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def _connection(monkeypatch, conn_id: str, port: int, token: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "spark_connect", "host": "localhost", "port": port, "extra": {"token": token}}))


def _run(spec, settings, day: dt.date):
    from airflow.utils.session import create_session

    from batchml.pipelines.features import build_dag

    run = build_dag(spec, settings).test(logical_date=dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
    return run, states


def test_the_feature_dag_through_a_spark_connect_server_publishes_what_a_local_session_builds(
    airflow_db, churn_spec, small_landing, small_as_of, isolated_home, connect_server, spark, tmp_path, monkeypatch
):
    from batchml.features import run_feature_job
    from batchml.storage import feature_partition_dir

    port, token, log = connect_server
    _connection(monkeypatch, "batchml_connect", port, token)
    settings = isolated_home(landing_url=small_landing.url, spark_conn_id="batchml_connect")
    run, states = _run(churn_spec, settings, small_as_of)
    assert run.state == "success", states
    published = pd.read_parquet(feature_partition_dir(settings.features_root, "churn", small_as_of) / "part-0.parquet")

    # the same job on the test's local session, after the Connect session: local sessions still work in the process
    local = run_feature_job(spark, churn_spec, Path(small_landing.url), small_as_of, tmp_path / "local")
    expected = pd.read_parquet(local.staged_file)
    assert len(published) == local.rows > 400
    pd.testing.assert_frame_equal(published, expected)
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ
    assert token not in log.read_text(), "the server must not print its token"


def test_a_wrong_token_or_a_closed_port_fails_the_task_at_once_with_what_to_do(
    airflow_db, churn_spec, small_landing, small_as_of, isolated_home, connect_server, monkeypatch
):
    from airflow.utils.session import create_session
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from batchml.errors import ConfigurationError
    from batchml.pipelines.common import spark_connection
    from batchml.spark import spark_session

    port, _, _ = connect_server
    for conn_port, said in [(port, "Invalid authentication token"),
                            (_free_port(), "cannot reach the Spark Connect server")]:
        _connection(monkeypatch, "batchml_connect_bad", conn_port, "not-the-token")
        url, conf = spark_connection("batchml_connect_bad")
        assert url == f"sc://localhost:{conn_port}/;token=not-the-token"
        with pytest.raises(ConfigurationError, match=said) as raised:
            with spark_session(url, conf, "test"):
                pass
        assert "batchml spark-server" in str(raised.value) and "not-the-token" not in str(raised.value)
        assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ
        # the refused client is closed: one left open calls the server again when the process exits, and retried
        # for as long as the server was gone (a test run printed its summary and did not exit)
        assert ConnectSession.getActiveSession() is None

        settings = isolated_home(landing_url=small_landing.url, spark_conn_id="batchml_connect_bad")
        started = time.perf_counter()
        run, states = _run(churn_spec, settings, small_as_of)
        assert run.state == "failed" and states["build_features"] == "failed", states
        with create_session() as session:
            ti = next(t for t in run.get_task_instances(session=session) if t.task_id == "build_features")
            assert ti.try_number == 1, "a configuration error is not retried"
        assert time.perf_counter() - started < 300
        assert not (settings.features_root / "churn").exists()


def test_the_server_stops_cleanly_on_sigterm(tmp_root):
    port = _free_port()
    env = {**os.environ, "BATCHML_HOME": str(tmp_root / "connect-home")}
    env.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("batchml")), "spark-server", "--master", "local[1]",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("ready:"):
            break
    assert lines and lines[-1].strip() == f"ready: sc://localhost:{port}", "".join(lines)[-2000:]
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, rest[-2000:]
    assert "Spark Connect server stopped." in rest
