"""The no-Docker stack end to end: every service healthy and reachable only with its credentials, from independent
clients (requests, boto3, psycopg, mlflow, pyspark), on 127.0.0.1 only. The `stack` fixture (conftest.py) starts it
once and stops it at the end, checking that nothing listens on its ports afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.stack


def test_every_service_is_healthy_and_the_credentials_file_is_private(stack):
    from batchml.stack import SECRET_NAMES, Stack

    state = Stack(stack.root)
    health = state.health()
    assert set(health) == {"postgres", "moto-s3", "spark-master", "spark-worker", "mlflow", "airflow-api-server",
                           "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
    assert all(ok for ok, _ in health.values()), health
    status = stack.cli("status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    for name in health:
        assert name in status.stdout
    assert stack.up_seconds < 400, stack.up_output
    # one private file with every password; each one generated for this stack, none repeated
    assert (state.env_file.stat().st_mode & 0o777) == 0o600
    assert (state.state_file.stat().st_mode & 0o777) == 0o600
    generated = [state.secret[name] for name in SECRET_NAMES]
    assert len(set(generated)) == len(generated) and all(len(s) >= 24 for s in generated)
    env = stack.env
    for key in ("BATCHML_WAREHOUSE_URL", "BATCHML_LANDING_URL", "BATCHML_MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                "AIRFLOW_CONN_BATCHML_SPARK", "BATCHML_STACK_AIRFLOW_PASSWORD", "BATCHML_STACK_ANALYST_DSN",
                "BATCHML_WAREHOUSE_READER_ROLE"):
        assert env.get(key), key
    assert env["BATCHML_WAREHOUSE_READER_ROLE"] == "batchml_analyst"
    assert env["BATCHML_LANDING_URL"].startswith("s3://")


def test_batchml_settings_of_the_stack_validate(stack, monkeypatch):
    """The BATCHML_* values the Airflow processes get pass batchml's own validation."""
    for key, value in stack.env.items():
        if key.startswith("BATCHML_") and not key.startswith("BATCHML_STACK_"):
            monkeypatch.setenv(key, value)
    from batchml.settings import get_settings

    settings = get_settings()
    assert settings.landing_is_s3
    assert str(settings.warehouse_url).startswith("postgresql+psycopg://batchml_writer:")
    assert settings.mlflow_tracking_uri == stack.urls["mlflow"]
    assert settings.data_root.is_relative_to(stack.root)


def test_every_listening_socket_of_the_stack_is_on_loopback(stack):
    """Not only the ports the stack chose: every socket any of its processes listens on (log servers, Spark UIs and
    block managers, uvicorn workers ...)."""
    import psutil

    sockets = []
    for proc in stack.state.processes():
        try:
            sockets += [(proc.pid, c.laddr) for c in proc.net_connections(kind="inet")
                        if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    assert {addr.port for _, addr in sockets} >= set(stack.ports.values()), sockets
    exposed = [(pid, addr) for pid, addr in sockets if addr.ip not in ("127.0.0.1", "::ffff:127.0.0.1")]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_airflow_api_refuses_anonymous_calls_and_accepts_a_token(stack):
    anonymous = stack.airflow_api()
    assert anonymous.get("/api/v2/dags").status_code in (401, 403)
    wrong = anonymous.post("/auth/token", json={"username": "admin", "password": "admin"})
    assert wrong.status_code in (401, 403)
    api = stack.airflow_api(stack.airflow_token())
    dags = api.get("/api/v2/dags")
    assert dags.status_code == 200 and "dags" in dags.json()
    health = anonymous.get("/api/v2/monitor/health").json()
    assert {health[k]["status"] for k in ("metadatabase", "scheduler", "dag_processor", "triggerer")} == {"healthy"}


def test_a_task_runs_under_the_scheduler_and_reports_through_the_execution_api(stack):
    """churn__model_admin's rollback on an empty registry: the task process parses the DAG, runs batchml's code
    against the stack's MLflow and warehouse, and fails with batchml's own error, reported back to the API server."""
    run, tis = stack.run_dag("churn__model_admin", {"action": "rollback", "reason": "e2e: a task runs"}, timeout=300)
    assert len(tis) == 1, tis
    ti = tis[0]
    assert ti["state"] in ("success", "failed") and ti["try_number"] == 1 and ti["pid"], ti
    text = stack.task_log(ti)
    assert "Worker startup parse complete" in text or "DagBag" in text, text[-3000:]
    assert "Connection refused" not in text, text[-3000:]


def test_mlflow_refuses_anonymous_calls_and_stores_artifacts_in_s3(stack, monkeypatch):
    import requests

    from batchml.stack import ARTIFACT_BUCKET

    base = stack.urls["mlflow"]
    search = f"{base}/api/2.0/mlflow/experiments/search"
    assert requests.get(search, params={"max_results": 1}, timeout=30).status_code == 401
    assert requests.get(search, params={"max_results": 1}, auth=("batchml", "wrong-password"), timeout=30
                        ).status_code == 401
    assert requests.get(search, params={"max_results": 1}, auth=stack.mlflow_auth(), timeout=30).status_code == 200
    # the server caches a successful credential check (auth_cache_ttl_seconds): a wrong password for the same user,
    # right after, is still refused
    user = stack.mlflow_auth()[0]
    assert requests.get(search, params={"max_results": 1}, auth=(user, "wrong-password"), timeout=30
                        ).status_code == 401

    import boto3
    from mlflow import MlflowClient

    for key, value in stack.env.items():
        if key.startswith(("MLFLOW_", "AWS_")):
            monkeypatch.setenv(key, value)
    # MLflow's S3 client comes from boto3's default session, which keeps the first keys it resolved in this process
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    client = MlflowClient(tracking_uri=stack.env["BATCHML_MLFLOW_TRACKING_URI"])
    s3 = stack.s3()

    def stored(experiment: str, location: str | None) -> tuple[str, list[str]]:
        run = client.create_run(client.create_experiment(experiment, artifact_location=location))
        client.log_text(run.info.run_id, "stored in S3", "probe/hello.txt")
        client.set_terminated(run.info.run_id)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACT_BUCKET).get("Contents", [])]
        return run.info.run_id, keys

    # as batchml.registry creates its experiments (BATCHML_MLFLOW_ARTIFACT_ROOT/<use case>): the client writes to S3
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    run_id, keys = stored(name, f"{stack.env['BATCHML_MLFLOW_ARTIFACT_ROOT']}/{name}")
    assert f"batchml/{name}/{run_id}/artifacts/probe/hello.txt" in keys, keys
    # an experiment without a location: artifacts go through the server (--serve-artifacts) to its S3 destination
    run_id, keys = stored(f"{name}-proxied", None)
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    assert any(k.startswith("artifacts/") and k.endswith(f"{run_id}/artifacts/probe/hello.txt") for k in keys), keys


def test_s3_refuses_unsigned_and_wrongly_signed_requests(stack):
    import boto3
    import requests
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from batchml.stack import ARTIFACT_BUCKET, LANDING_BUCKET

    endpoint = stack.env["AWS_ENDPOINT_URL"]
    unsigned = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version=UNSIGNED))
    with pytest.raises(ClientError) as refused:
        unsigned.list_objects_v2(Bucket=LANDING_BUCKET)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as refused:
        stack.s3(secret="not-the-secret-key").list_buckets()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError):
        stack.s3(key="AKIAUNKNOWNKEY000000").list_buckets()
    # moto's management API (reset, disabling authentication, a dump of every key) is closed
    assert requests.post(f"{endpoint}/moto-api/reset-auth", data=b"1000", timeout=10).status_code == 403
    assert requests.get(f"{endpoint}/moto-api/data.json", timeout=10).status_code == 403

    s3 = stack.s3()
    assert {LANDING_BUCKET, ARTIFACT_BUCKET} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}
    s3.put_object(Bucket=LANDING_BUCKET, Key="landing/e2e/probe.txt", Body=b"ok")
    assert s3.get_object(Bucket=LANDING_BUCKET, Key="landing/e2e/probe.txt")["Body"].read() == b"ok"


def test_the_analyst_role_connects_to_the_warehouse_but_cannot_create_or_write(stack):
    import psycopg
    from psycopg import errors

    env = stack.env
    writer = env["BATCHML_WAREHOUSE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(writer, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS e2e_probe (id int)")
        conn.execute("INSERT INTO e2e_probe VALUES (1)")
    analyst = env["BATCHML_STACK_ANALYST_DSN"]
    with psycopg.connect(analyst, autocommit=True) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("batchml_analyst", "warehouse")
        with pytest.raises(errors.ReadOnlySqlTransaction):  # its sessions are read-only by default ...
            conn.execute("INSERT INTO e2e_probe VALUES (2)")
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")  # ... and privileges hold without that
        for statement in ("CREATE TABLE analyst_table (id int)", "CREATE TEMP TABLE analyst_temp (id int)",
                          "CREATE SCHEMA analyst_schema", "INSERT INTO e2e_probe VALUES (2)",
                          "UPDATE e2e_probe SET id = 3", "DELETE FROM e2e_probe", "DROP TABLE e2e_probe"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
    for database in ("airflow", "mlflow", "postgres"):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(analyst.rsplit("/", 1)[0] + f"/{database}", connect_timeout=10)
    with psycopg.connect(writer, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM e2e_probe").fetchone()[0] == 1
        conn.execute("DROP TABLE e2e_probe")


SPARK_JOB = """
import json, os, sys
from pyspark.sql import SparkSession

conn = json.loads(os.environ["AIRFLOW_CONN_BATCHML_SPARK"])  # what @task.pyspark does with the connection
builder = SparkSession.builder.master(conn["host"]).appName(sys.argv[1])
for key, value in conn["extra"].items():
    if key not in sys.argv[2:]:
        builder = builder.config(key, value)
spark = builder.getOrCreate()
print("APP_ID", spark.sparkContext.applicationId, flush=True)
print("RESULT", spark.range(0, 1000, numPartitions=2).selectExpr("sum(id)").collect()[0][0], flush=True)
spark.stop()
"""


def _spark_driver(stack, tmp_path, app: str, *drop: str) -> subprocess.Popen:
    script = tmp_path / "job.py"
    script.write_text(SPARK_JOB)
    log = open(tmp_path / f"{app}.log", "w")  # noqa: SIM115 - the child process writes it
    return subprocess.Popen([sys.executable, str(script), app, *drop], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **stack.env}, start_new_session=True)


def test_spark_cluster_runs_a_job_with_the_secret_and_refuses_one_without(stack, tmp_path):
    master = stack.state.spark_master_json()
    workers = [w for w in master["workers"] if w["state"] == "ALIVE"]
    assert len(workers) == 1 and workers[0]["cores"] == 2, master["workers"]
    ok_app, refused_app = f"e2e-ok-{uuid.uuid4().hex[:6]}", f"e2e-nosecret-{uuid.uuid4().hex[:6]}"
    # both drivers at once: the refused one keeps retrying for about a minute, its refusal shows in its log first
    ok = _spark_driver(stack, tmp_path, ok_app)
    refused = _spark_driver(stack, tmp_path, refused_app, "spark.authenticate", "spark.authenticate.secret")
    try:
        assert ok.wait(timeout=300) == 0, (tmp_path / f"{ok_app}.log").read_text()[-3000:]
        deadline = time.monotonic() + 120
        while "SASL" not in (tmp_path / f"{refused_app}.log").read_text() and refused.poll() is None:
            assert time.monotonic() < deadline, (tmp_path / f"{refused_app}.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        for proc in (ok, refused):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = (tmp_path / f"{ok_app}.log").read_text()
    app_id = out.split("APP_ID ", 1)[1].split()[0]
    assert "RESULT 499500" in out
    refused_log = (tmp_path / f"{refused_app}.log").read_text()
    assert "Expected SaslMessage" in refused_log or "Failed to connect to master" in refused_log, refused_log[-3000:]
    apps = stack.state.spark_master_json()
    completed = {a["id"]: a for a in apps["completedapps"]}
    assert app_id in completed and completed[app_id]["name"] == ok_app, json.dumps(apps)[:2000]
    assert refused_app not in {a["name"] for a in apps["activeapps"] + apps["completedapps"]}
