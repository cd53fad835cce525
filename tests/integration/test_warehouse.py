"""The warehouse layer on SQLite and on a real PostgreSQL: versioned DDL, bulk loads, atomic per-date swaps."""

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from batchml import warehouse as wh

D = dt.date(2026, 7, 1)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = wh.create_engine(url)
    yield eng
    eng.dispose()


def _columns():
    return wh.score_columns("customer_id", 2, {"plan": "categorical"})


def _batch(day: dt.date, n: int, offset: int = 0, score: float = 0.5) -> pa.RecordBatch:
    schema = wh.arrow_schema(_columns())
    data = {f.name: [None] * n for f in schema}
    data.update({
        "customer_id": [f"C{i + offset}" for i in range(n)], "as_of_date": [day] * n, "model_role": ["champion"] * n,
        "score": [score] * n, "risk_decile": [1] * n, "risk_band": ["high"] * n, "plan": ["basic"] * n,
        "reasons_exact": [False] * n, "model_name": ["m"] * n, "model_version": [1] * n,
        "airflow_run_id": ["r"] * n, "scored_at": [pd.Timestamp("2026-07-01T01:00", tz="UTC")] * n,
    })
    return pa.RecordBatch.from_pydict(data, schema=schema)


def _publish(engine, day, n, score, label):
    staging = wh.staging_table_name("churn_scores", day, label)
    wh.create_staging_table(engine, staging, _columns(), day)
    loaded = wh.bulk_load(engine, staging, [_batch(day, n // 2, 0, score), _batch(day, n - n // 2, n // 2, score)],
                          wh.arrow_schema(_columns()))
    assert loaded == n
    wh.publish_partition(engine, "churn_scores", staging, day)


def test_migrations_run_once_and_are_recorded(engine):
    first = wh.ensure_score_table(engine, "churn_scores", _columns())
    again = wh.ensure_score_table(engine, "churn_scores", _columns())
    assert first == ["registry_events v1: model registry events table",
                     "scores:churn_scores v1: score table churn_scores, views, comments"]
    assert again == []
    names = set(sa.inspect(engine).get_table_names()) | set(sa.inspect(engine).get_view_names())
    assert {"churn_scores", "churn_scores_champion", "churn_scores_latest", "model_registry_events",
            "batchml_schema_migrations"} <= names


def test_a_changed_column_list_is_refused_with_what_to_do(engine):
    wh.ensure_score_table(engine, "churn_scores", _columns())
    with pytest.raises(wh.WarehouseError, match="add a migration .* or set scoring.table"):
        wh.ensure_score_table(engine, "churn_scores", wh.score_columns("customer_id", 3))


def test_publishing_a_date_replaces_only_that_date(engine):
    wh.ensure_score_table(engine, "churn_scores", _columns())
    _publish(engine, D, 100, 0.5, "a")
    _publish(engine, D + dt.timedelta(days=1), 50, 0.5, "b")
    _publish(engine, D, 80, 0.9, "c")  # re-run of D with other results
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text(
            "SELECT CAST(as_of_date AS VARCHAR(10)), COUNT(*) FROM churn_scores GROUP BY as_of_date")).all())
        assert counts == {"2026-07-01": 80, "2026-07-02": 50}
        assert conn.execute(sa.text("SELECT MIN(score) FROM churn_scores WHERE as_of_date = :d"),
                            {"d": D}).scalar() == pytest.approx(0.9)
        latest = conn.execute(sa.text("SELECT COUNT(*) FROM churn_scores_latest")).scalar()
        assert latest == 80  # each customer once: C0..C49 from D+1, C50..C79 from D
    tables = sa.inspect(engine).get_table_names()
    assert not [t for t in tables if "_s2026" in t], "staging tables are consumed by the swap"


def test_staging_refuses_rows_of_another_date(engine):
    wh.ensure_score_table(engine, "churn_scores", _columns())
    staging = wh.staging_table_name("churn_scores", D, "x")
    wh.create_staging_table(engine, staging, _columns(), D)
    with pytest.raises(Exception, match="(?i)check|constraint"):
        wh.bulk_load(engine, staging, [_batch(D + dt.timedelta(days=3), 5)], wh.arrow_schema(_columns()))


def test_registry_events_round_trip(engine):
    wh.record_registry_event(engine, use_case="churn", model_name="churn", model_version=3, event="promoted",
                             reasons=["clears the floors", "beats the champion"], metrics={"roc_auc": 0.8},
                             previous_champion=2, actor="airflow", airflow_run_id="r1", mlflow_run_id="abc")
    (event,) = wh.registry_events(engine, "churn")
    assert event["reasons"] == ["clears the floors", "beats the champion"]
    assert (event["model_version"], event["previous_champion"], event["metrics"]["roc_auc"]) == (3, 2, 0.8)


@pytest.mark.postgres
def test_postgres_tables_and_columns_carry_comments(pg_url):
    engine = wh.create_engine(pg_url)
    wh.ensure_score_table(engine, "churn_scores", _columns())
    with engine.connect() as conn:
        table = conn.execute(sa.text("SELECT obj_description('churn_scores'::regclass)")).scalar()
        column = conn.execute(sa.text(
            "SELECT col_description('churn_scores'::regclass, attnum) FROM pg_attribute "
            "WHERE attrelid = 'churn_scores'::regclass AND attname = 'risk_decile'")).scalar()
    assert "Analysts: use the views churn_scores_champion" in table
    assert column.startswith("Decile of the score")


def test_unreachable_warehouse_says_what_to_check():
    engine = wh.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(wh.WarehouseError, match="cannot reach the warehouse .*Check BATCHML_WAREHOUSE_URL"):
        wh.ping(engine)


@pytest.mark.parametrize("name", ["Scores", "1scores", "scores-x", "scores; drop table t", 'a"b', "x" * 70])
def test_identifiers_are_strict(name):
    with pytest.raises(wh.WarehouseError, match="not a valid identifier"):
        wh.check_identifier(name)
