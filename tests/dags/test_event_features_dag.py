"""The feature DAG of an event entity (specs/fraud.yaml, issue 17) run by a real Airflow (dag.test) on small
generated card-fraud data: the same five steps as a population's, one published row per transaction of the day."""

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from dagtest import run_for_day

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.gx]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fraud_landing(tmp_path_factory):
    """46 days of a small card-fraud data set: the scored day and the 44 days its features read before it."""
    from batchml.fraud_data import DEFAULT_CONFIG, generate_fraud_data
    from batchml.storage import Landing

    cfg = dataclasses.replace(DEFAULT_CONFIG, cards=300, merchants=120, transactions_per_day=600, days=46, seed=3)
    landing = Landing(str(tmp_path_factory.mktemp("fraud") / "landing"))
    generate_fraud_data(cfg, landing)
    return landing, cfg.end + dt.timedelta(days=1)


def test_event_feature_dag_publishes_one_row_per_transaction_of_the_day(airflow_db, fraud_landing, isolated_home,
                                                                        tmp_path):
    import shutil

    from batchml.pipelines.features import build_dag
    from batchml.specs import load_spec
    from batchml.storage import feature_partition_dir, read_manifest

    landing, as_of = fraud_landing
    # dag.test() serializes the DAGs the dags folder generates: from a specs folder holding the fraud spec
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(REPO / "specs" / "fraud.yaml", specs)
    spec = load_spec(specs / "fraud.yaml")
    settings = isolated_home(landing_url=landing.url, specs_dir=specs)
    run = run_for_day(build_dag(spec, settings), as_of)
    assert run.state == "success", run.states

    part = feature_partition_dir(settings.features_root, "fraud", as_of)
    table = pd.read_parquet(part / "part-0.parquet")
    day = as_of - dt.timedelta(days=1)
    raw = ds.dataset(f"{landing.url}/card_transactions/dt={day}", format="parquet").to_table().to_pandas()
    assert sorted(table.transaction_id) == sorted(raw.transaction_id), "one row per transaction of the day"
    assert list(table.columns) == ["transaction_id", "as_of_date", "event_ts", *spec.feature_columns()]
    assert read_manifest(part)["rows"] == len(table) > 400
    assert (table.event_ts.dt.date == day).all() and (table.as_of_date.astype(str) == as_of.isoformat()).all()
    # what the Spark job computed, at a glance: histories, new merchants, and matured chargebacks of merchants
    assert table.card_count_168h.max() > 5 and set(table.card_first_merchant_id) == {0, 1}
    assert table.merchant_matured_14d.gt(0).mean() > 0.5 and table.merchant_label_rate_14d.between(0, 1).all()
    # the raw checks ran on what the job reads: the transactions and the chargebacks, never the entity sources
    checked = run.value("validate_raw")["raw_checks"]
    assert [s for s in ("card_transactions", "chargebacks", "cards", "merchants")
            if any(k.endswith(s) for k in checked)] == ["card_transactions", "chargebacks"], checked
