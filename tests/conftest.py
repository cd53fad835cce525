"""Shared fixtures: an isolated environment, a migrated Airflow metadata DB, a Spark session, a moto S3 server,
and small generated data sets. Everything is created once per session and lives under one temp folder.

The environment is set at import time, before anything imports Airflow: Airflow reads its configuration then.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sample_data import (  # test files import these from sample_data: `conftest` is ambiguous by name
    DRIFT_START,
    REPO,
    SMALL_AS_OF,
    SMALL_DAYS,
    SMALL_START,
    SMALL_TRAINING_DATE,
    TINY_TRAINING_DATE,
    write_synthetic_lake,
)

_TMP = Path(tempfile.mkdtemp(prefix="batchml-tests-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_TMP / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_CONN_BATCHML_SPARK": '{"conn_type": "spark", "host": "local[2]", "extra": '
        '{"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}}',
        "GX_ANALYTICS_ENABLED": "false",
        "BATCHML_HOME": str(_TMP / "home"),
        "BATCHML_SPECS_DIR": str(REPO / "specs"),
        "PYSPARK_PYTHON": sys.executable,
    }
)
for _var in ("BATCHML_DATA_ROOT", "BATCHML_LANDING_URL", "BATCHML_WAREHOUSE_URL", "BATCHML_MLFLOW_TRACKING_URI",
             "BATCHML_MLFLOW_ARTIFACT_ROOT", "BATCHML_SPARK_CONN_ID", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_var, None)

# The small data set most tests share: 600 customers over 100 days, so that a 90-day window fits.


# py4j logs from __del__ at interpreter exit, after pytest has closed the captured streams
logging.getLogger("py4j").setLevel(logging.WARNING)


def pytest_sessionfinish(session, exitstatus):
    _stop_spark_jvm()
    shutil.rmtree(_TMP, ignore_errors=True)


def _stop_spark_jvm() -> None:
    """Stop this process's Spark driver JVM before its home goes: a JVM writing its class archive at exit
    (batchml.sparkconf) would otherwise fail on a deleted folder after the session and print a JVM error."""
    pyspark = sys.modules.get("pyspark")
    if pyspark is None:
        return
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    proc = getattr(gateway, "proc", None)
    if gateway is not None:
        gateway.shutdown()  # py4j's own threads first, so none of them talks to a JVM on its way out
    if proc is not None and proc.stdin is not None:
        proc.stdin.close()  # PySpark's gateway JVM exits at the end of its standard input
        proc.wait(timeout=120)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _TMP


@pytest.fixture(scope="session")
def churn_spec():
    from batchml.specs import load_spec

    return load_spec(REPO / "specs" / "churn.yaml")


@pytest.fixture(scope="session")
def small_as_of() -> dt.date:
    return SMALL_AS_OF


@pytest.fixture(scope="session")
def small_config():
    from batchml.generate import GeneratorConfig

    return GeneratorConfig(customers=600, start=SMALL_START, days=SMALL_DAYS, seed=11)


@pytest.fixture(scope="session")
def small_landing(small_config, tmp_root):
    """A local landing zone with the small generated data set (read-only for tests: copy before changing it)."""
    from batchml.generate import generate
    from batchml.storage import Landing

    landing = Landing(str(tmp_root / "small_landing"))
    generate(small_config, landing)
    return landing


@pytest.fixture
def landing_copy(small_landing, tmp_path):
    """A private, writable copy of the small landing zone, for tests that damage it."""
    from batchml.storage import Landing

    target = tmp_path / "landing"
    shutil.copytree(small_landing.url, target)
    return Landing(str(target))


@pytest.fixture(scope="session")
def spark():
    from batchml.spark import local_spark_session

    session = local_spark_session("local[2]", app_name="batchml-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session


@pytest.fixture(scope="session")
def airflow_db(tmp_root):
    """A migrated Airflow metadata DB (SQLite) for dag.test()."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True, text=True
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return tmp_root / "airflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real HTTP S3 endpoint: moto in server mode, in its own process. Yields its endpoint URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto_server did not start within 30 s")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Point boto3 at the moto server and create a fresh bucket; yields the bucket name."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"landing-{uuid.uuid4().hex[:8]}"
    # not boto3.client(): its default session would keep these test keys for every later client in the process
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_root) -> Path:
    """An empty, migrated MLflow SQLite store: copied per test instead of migrating a new one (~4 s) each time."""
    from mlflow import MlflowClient

    path = tmp_root / "mlflow-template.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def isolated_home(tmp_path, monkeypatch, mlflow_db_template):
    """Fresh batchml local state (data lake, GX project, MLflow store) for one test; returns a settings factory."""
    monkeypatch.setenv("BATCHML_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir(exist_ok=True)
    shutil.copy(mlflow_db_template, tmp_path / "home" / "mlflow.db")

    def settings(**env):
        for key, value in env.items():
            monkeypatch.setenv(f"BATCHML_{key.upper()}", str(value))
        from batchml.settings import get_settings

        return get_settings()

    return settings




@pytest.fixture(scope="session")
def tiny_spec():
    from batchml.specs import load_spec

    return load_spec(REPO / "tests" / "fixtures" / "specs" / "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_lake(tiny_spec, tmp_root):
    """A synthetic lake for the tiny spec: feature partitions of every training snapshot + matured label events."""
    return write_synthetic_lake(tmp_root / "tiny_lake", tiny_spec, TINY_TRAINING_DATE)


@pytest.fixture(scope="session")
def tiny_training_set(tiny_spec, tiny_lake):
    from batchml.datasets import build_training_set

    features_root, raw_root = tiny_lake
    return build_training_set(tiny_spec, features_root, raw_root, TINY_TRAINING_DATE)




@pytest.fixture(scope="session")
def training_landing(tmp_root):
    """Generated churn data long enough to train on: 900 customers over 200 days (to 2026-07-19), stable until
    2026-07-05, when the drift knob turns on (more activity, larger amounts, more app use, a new category)."""
    from batchml.generate import GeneratorConfig, generate
    from batchml.storage import Landing

    landing = Landing(str(tmp_root / "training_landing"))
    generate(GeneratorConfig(customers=900, start=SMALL_START, days=200, seed=13, drift_start=DRIFT_START,
                             drift_strength=2.5), landing)
    return landing


@pytest.fixture(scope="session")
def small_training_spec(churn_spec):
    """The churn spec with a compact split and a tiny tuning budget, for DAG runs on small data."""
    from batchml.specs import UseCaseSpec

    data = churn_spec.model_dump()
    data["training"].update(
        split={"every_days": 7, "train": 4, "validation": 1, "test": 1, "purge": False},
        tuning={"trials": 2, "timeout_seconds": 30, "metric": "roc_auc", "early_stopping_rounds": 20},
        min_rows=300, min_positives=10, shap_sample=300,
    )
    spec = UseCaseSpec.model_validate(data)
    spec._path, spec._sha256 = churn_spec.path, churn_spec.sha256
    return spec


@pytest.fixture(scope="session")
def training_snapshots(spark, small_training_spec, training_landing, tmp_root):
    """The feature partitions of every snapshot `small_training_spec` plans for SMALL_TRAINING_DATE, built once with
    the feature DAG's own steps (checks included). Tests that are not about building snapshots copy them with
    sample_data.copy_training_snapshots instead of paying a Spark job per snapshot."""
    from batchml.datasets import ensure_snapshots
    from batchml.settings import Settings

    settings = Settings(home=tmp_root / "snapshots_home", landing_url=training_landing.url)
    ready = ensure_snapshots(spark, small_training_spec, settings, SMALL_TRAINING_DATE, "prebuilt")
    assert ready.built == ready.snapshots
    return settings.features_root


@pytest.fixture(scope="session")
def trained_folder(tiny_spec, tiny_lake, tmp_path_factory):
    """One finished training run (candidates trained with a tiny budget, evaluated) on the synthetic lake."""
    from batchml.datasets import prepare_training_set
    from batchml.evaluation import evaluate
    from batchml.settings import Settings
    from batchml.training import train_candidates

    features_root, raw_root = tiny_lake
    settings = Settings(data_root=features_root.parent, landing_url=str(raw_root))
    folder = tmp_path_factory.mktemp("trained") / "run"
    ref = prepare_training_set(tiny_spec, settings, TINY_TRAINING_DATE, folder)
    return evaluate(tiny_spec, train_candidates(tiny_spec, ref, trials=2, timeout=None))


@pytest.fixture
def trained_run(trained_folder, tiny_lake, isolated_home):
    """Settings with this test's own MLflow store and warehouse, and `run(label)` giving a copy of the trained run."""
    import shutil
    from pathlib import Path

    features_root, raw_root = tiny_lake
    # the data root is the shared lake; MLflow, the warehouse and run folders default to this test's own home
    settings = isolated_home(data_root=features_root.parent, landing_url=raw_root)

    def run(label: str):
        folder = settings.home / "runs" / label
        shutil.copytree(trained_folder.run_dir, folder)
        evaluation = folder / "evaluation.json"  # plot paths point into the copied folder
        evaluation.write_text(evaluation.read_text().replace(str(Path(trained_folder.run_dir)), str(folder)))
        return trained_folder.model_copy(update={"run_dir": str(folder)})

    return settings, run


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the whole session (initdb + pg_ctl on a free port)."""
    from batchml.localpg import LocalPostgres

    server = LocalPostgres(database="postgres_admin").start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty database on the session's PostgreSQL server; returns its SQLAlchemy URL."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.libpq_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def scoring_env(tiny_spec, tiny_lake, trained_folder, isolated_home, warehouse_url):
    """Settings with the tiny lake's features, a fresh MLflow store holding champion v1, and the given warehouse
    (SQLite, then the session's PostgreSQL)."""
    features_root, raw_root = tiny_lake
    settings = isolated_home(data_root=features_root.parent, landing_url=raw_root, warehouse_url=warehouse_url)
    folder = settings.home / "run"
    shutil.copytree(trained_folder.run_dir, folder)
    evaluation = folder / "evaluation.json"
    evaluation.write_text(evaluation.read_text().replace(trained_folder.run_dir, str(folder)))
    from batchml.gate import register_and_gate

    result = register_and_gate(tiny_spec, settings, trained_folder.model_copy(update={"run_dir": str(folder)}), "t1")
    assert result.verdict == "champion"
    return settings
