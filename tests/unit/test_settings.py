"""Settings: embedded defaults, path resolution and clear errors for bad values."""

from pathlib import Path

import pytest

from batchml.errors import SettingsError
from batchml.settings import REPO_ROOT, get_settings


def test_defaults_keep_all_state_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("BATCHML_HOME", str(tmp_path))
    s = get_settings()
    assert s.data_root == tmp_path / "data"
    assert s.landing_url == str(tmp_path / "data" / "landing")
    assert s.warehouse_url == f"sqlite:///{tmp_path / 'warehouse.db'}"
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.spark_conn_id == "batchml_spark"
    assert not s.landing_is_s3


def test_relative_paths_resolve_against_the_repository_not_the_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHML_HOME", "some/state")
    monkeypatch.setenv("BATCHML_LANDING_URL", "raw/landing")
    s = get_settings()
    assert s.home == REPO_ROOT / "some" / "state"
    assert s.landing_url == str(REPO_ROOT / "raw" / "landing")


def test_s3_landing_is_kept_as_url(monkeypatch):
    monkeypatch.setenv("BATCHML_LANDING_URL", "s3://bucket/raw/")
    s = get_settings()
    assert s.landing_url == "s3://bucket/raw"
    assert s.landing_is_s3


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("BATCHML_LANDING_URL", "gs://bucket/x", "scheme 'gs' is not supported"),
        ("BATCHML_LANDING_URL", "s3:///no-bucket", "needs a bucket"),
        ("BATCHML_WAREHOUSE_URL", "warehouse.db", "expected a SQLAlchemy URL"),
        ("BATCHML_WAREHOUSE_URL", "http://example.com/db", "expected a SQLAlchemy URL"),
        ("BATCHML_MLFLOW_TRACKING_URI", "mlflow.db", "expected sqlite"),
        ("BATCHML_SPARK_CONN_ID", "spark default", "should match pattern"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, var, value, fragment):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        get_settings()
    message = str(err.value)
    assert f"{var}={value!r}" in message
    assert fragment in message
    assert ".env.example" in message


def test_env_example_documents_every_setting():
    from batchml.settings import Settings

    text = (REPO_ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"BATCHML_{name.upper()}" in text, f"BATCHML_{name.upper()} is not documented in .env.example"


def test_data_lake_locations_derive_from_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("BATCHML_DATA_ROOT", str(tmp_path / "lake"))
    s = get_settings()
    assert s.features_root == tmp_path / "lake" / "features"
    assert s.gx_root == tmp_path / "lake" / "gx"
    assert s.data_docs_index.is_relative_to(Path(tmp_path / "lake" / "gx"))


@pytest.mark.parametrize(
    ("host", "port", "extras", "url"),
    [
        ("localhost", 15099, {}, "sc://localhost:15099"),
        ("sc://spark.internal", None, {"token": "t0k", "use_ssl": "true"}, "sc://spark.internal:15002/;token=t0k;use_ssl=true"),
        ("connect.example.com/", 443, {"user_id": "airflow", "spark.sql.shuffle.partitions": "64"},
         "sc://connect.example.com:443/;user_id=airflow"),
    ],
)
def test_a_spark_connect_connection_becomes_its_sc_url(host, port, extras, url):
    from batchml.pipelines.common import connect_url

    assert connect_url(host, port, extras) == url


def test_a_spark_connect_connection_without_a_host_says_what_to_set():
    from batchml.errors import ConfigurationError
    from batchml.pipelines.common import connect_url

    with pytest.raises(ConfigurationError, match="has no host"):
        connect_url("", 15002, {})
