"""The score table on SQLite and on a real PostgreSQL: versioned DDL, bulk loads, atomic per-date swaps, comments,
and identifiers that need quoting (reserved words, mixed case)."""

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from batchml import gate
from batchml import score_table as st
from batchml import warehouse as wh

D = dt.date(2026, 7, 1)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = wh.create_engine(url)
    yield eng
    eng.dispose()


def _columns():
    return st.score_columns("customer_id", 2, {"plan": "categorical"})


def _batch(day: dt.date, n: int, offset: int = 0, score: float = 0.5) -> pa.RecordBatch:
    schema = st.arrow_schema(_columns())
    data = {f.name: [None] * n for f in schema}
    data.update({
        "customer_id": [f"C{i + offset}" for i in range(n)], "as_of_date": [day] * n, "model_role": ["champion"] * n,
        "score": [score] * n, "risk_decile": [1] * n, "risk_band": ["high"] * n, "plan": ["basic"] * n,
        "reasons_exact": [False] * n, "model_name": ["m"] * n, "model_version": [1] * n,
        "airflow_run_id": ["r"] * n, "scored_at": [pd.Timestamp("2026-07-01T01:00", tz="UTC")] * n,
    })
    return pa.RecordBatch.from_pydict(data, schema=schema)


def _publish(engine, day, n, score, label):
    staging = wh.staging_name("churn_scores", day, label)
    st.sql_table(staging, _columns(), keyed=False, day=day).create(engine)
    loaded = wh.bulk_load(engine, staging, [_batch(day, n // 2, 0, score), _batch(day, n - n // 2, n // 2, score)],
                          st.arrow_schema(_columns()))
    assert loaded == n
    wh.publish_partition(engine, "churn_scores", staging, day)


def test_migrations_run_once_and_are_recorded(engine):
    first = st.ensure_table(engine, "churn_scores", _columns())
    again = st.ensure_table(engine, "churn_scores", _columns())
    assert first == ["scores:churn_scores v1: score table churn_scores, views, comments",
                     "scores:churn_scores v2: reasons in words, numeric values, protective reason in churn_scores"]
    assert again == []
    gate.record_event(engine, use_case="churn", model_name="churn", model_version=1, event="promoted", reasons=[])
    names = set(sa.inspect(engine).get_table_names()) | set(sa.inspect(engine).get_view_names())
    assert {"churn_scores", "churn_scores_champion", "churn_scores_latest", "model_registry_events",
            "batchml_schema_migrations"} <= names
    with engine.connect() as conn:  # recorded once each, so a new process does not apply them again
        recorded = conn.execute(sa.text("SELECT migration_key, version FROM batchml_schema_migrations")).all()
    assert sorted(recorded) == [("registry_events", 1), ("scores:churn_scores", 1), ("scores:churn_scores", 2)]


def _view_columns(engine, view: str) -> list[str]:
    return [c["name"] for c in sa.inspect(engine).get_columns(view)]


def test_a_version_1_table_is_migrated_in_place_keeping_its_rows(engine):
    """A table created before the reasons had words (migration v1 only, rows of two dates) gets the new columns,
    keeps its rows and partitions, and its views show every column in reading order; new dates publish into it."""
    columns = _columns()
    old = [c for c in columns if c.since == 1]
    assert wh.migrate(engine, st.migrations("churn_scores", columns)[:1])  # what an older release left
    for day, label in ((D, "a"), (D + dt.timedelta(days=1), "b")):
        staging = wh.staging_name("churn_scores", day, label)
        st.sql_table(staging, old, keyed=False, day=day).create(engine)
        batch = _batch(day, 10).select([c.name for c in old])
        wh.bulk_load(engine, staging, [batch], st.arrow_schema(old))
        wh.publish_partition(engine, "churn_scores", staging, day)
    assert "reason_1_description" not in _view_columns(engine, "churn_scores_champion")

    applied = st.ensure_table(engine, "churn_scores", columns)
    assert applied == ["scores:churn_scores v2: reasons in words, numeric values, protective reason in churn_scores"]
    assert [c["name"] for c in sa.inspect(engine).get_columns("churn_scores")] == [c.name for c in columns]
    reading = [c.name for c in st.view_columns(columns)]
    assert reading[6:16] == ["reason_1", "reason_1_description", "reason_1_value", "reason_1_number",
                             "reason_1_impact", "reason_2", "reason_2_description", "reason_2_value",
                             "reason_2_number", "reason_2_impact"]
    for view in ("churn_scores_champion", "churn_scores_latest"):
        assert _view_columns(engine, view) == reading
    kept = pd.read_sql("SELECT * FROM churn_scores_champion", engine)
    assert len(kept) == 20 and kept.protective_reason.isna().all() and kept.reason_1_number.isna().all()
    _publish(engine, D + dt.timedelta(days=2), 30, 0.7, "c")  # a date scored with the new columns
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text(
            "SELECT CAST(as_of_date AS VARCHAR(10)), COUNT(*) FROM churn_scores GROUP BY as_of_date")).all())
        latest = conn.execute(sa.text("SELECT COUNT(*) FROM churn_scores_latest")).scalar()
    assert counts == {"2026-07-01": 10, "2026-07-02": 10, "2026-07-03": 30} and latest == 30
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            comments = dict(conn.execute(sa.text(
                "SELECT attname, col_description('churn_scores'::regclass, attnum) FROM pg_attribute "
                "WHERE attrelid = 'churn_scores'::regclass AND attnum > 0")).all())
            views = [conn.execute(sa.text(f"SELECT obj_description('{v}'::regclass)")).scalar()
                     for v in ("churn_scores_champion", "churn_scores_latest")]
        assert comments["reason_1"].startswith("Feature that raises the score the 1st most")
        assert comments["protective_reason_number"].startswith("Value of protective_reason as a number")
        assert comments["risk_decile"].startswith("Decile of the score")
        assert all(views), "the recreated views keep their comments"


def test_a_changed_column_list_is_refused_with_what_to_do(engine):
    st.ensure_table(engine, "churn_scores", _columns())
    with pytest.raises(wh.WarehouseError, match="add a migration .* or set scoring.table"):
        st.ensure_table(engine, "churn_scores", st.score_columns("customer_id", 3))


def test_publishing_a_date_replaces_only_that_date(engine):
    st.ensure_table(engine, "churn_scores", _columns())
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
    st.ensure_table(engine, "churn_scores", _columns())
    staging = wh.staging_name("churn_scores", D, "x")
    st.sql_table(staging, _columns(), keyed=False, day=D).create(engine)
    with pytest.raises(Exception, match="(?i)check|constraint"):
        wh.bulk_load(engine, staging, [_batch(D + dt.timedelta(days=3), 5)], st.arrow_schema(_columns()))


def test_registry_events_round_trip(engine):
    gate.record_event(engine, use_case="churn", model_name="churn", model_version=3, event="promoted",
                      reasons=["clears the floors", "beats the champion"], metrics={"roc_auc": 0.8},
                      previous_champion=2, actor="airflow", airflow_run_id="r1", mlflow_run_id="abc")
    (event,) = gate.read_events(engine, "churn")
    assert event["reasons"] == ["clears the floors", "beats the champion"]
    assert (event["model_version"], event["previous_champion"], event["metrics"]["roc_auc"]) == (3, 2, 0.8)


@pytest.mark.postgres
def test_postgres_tables_and_columns_carry_comments(pg_url):
    engine = wh.create_engine(pg_url)
    st.ensure_table(engine, "churn_scores", _columns())
    with engine.connect() as conn:
        table = conn.execute(sa.text("SELECT obj_description('churn_scores'::regclass)")).scalar()
        column = conn.execute(sa.text(
            "SELECT col_description('churn_scores'::regclass, attnum) FROM pg_attribute "
            "WHERE attrelid = 'churn_scores'::regclass AND attname = 'risk_decile'")).scalar()
    assert "Analysts: use the views churn_scores_champion" in table
    assert column.startswith("Decile of the score")


RESERVED = {"order": "categorical", "Group": "categorical", "Select": "numeric"}


def test_reserved_words_and_mixed_case_are_quoted(engine):
    """An entity key and carried columns named like SQL keywords, in mixed case, survive DDL, load, swap and views."""
    columns = st.score_columns("user", 2, RESERVED)
    st.ensure_table(engine, "odd_scores", columns)
    schema = st.arrow_schema(columns)
    n = 20
    data = {f.name: [None] * n for f in schema}
    data.update({"user": [f"U{i}" for i in range(n)], "as_of_date": [D] * n, "model_role": ["champion"] * n,
                 "score": [0.5] * n, "risk_decile": [1] * n, "risk_band": ["high"] * n, "order": ["a"] * n,
                 "Group": ["g"] * n, "Select": [1.5] * n,
                 "reasons_exact": [True] * n, "model_name": ["m"] * n, "model_version": [1] * n,
                 "airflow_run_id": ["r"] * n, "scored_at": [pd.Timestamp("2026-07-01T01:00", tz="UTC")] * n})
    for label in ("first", "again"):  # a re-run replaces the date
        staging = wh.staging_name("odd_scores", D, label)
        st.sql_table(staging, columns, keyed=False, day=D).create(engine)
        wh.bulk_load(engine, staging, [pa.RecordBatch.from_pydict(data, schema=schema)], schema)
        wh.publish_partition(engine, "odd_scores", staging, D)
    latest = pd.read_sql(sa.select(sa.table("odd_scores_latest", sa.column("user"), sa.column("Group"),
                                            sa.column("Select"), sa.column("order"))), engine)
    assert len(latest) == n and set(latest["Group"]) == {"g"} and set(latest["Select"]) == {1.5}
    # read back as monitoring reads them (PostgreSQL: through ADBC as Arrow; SQLite: pandas.read_sql)
    scores = st.read_scores(engine, "odd_scores", "user", D)
    assert scores.shape == (n, 3) and sorted(scores["user"]) == sorted(data["user"])
    assert set(scores["score"]) == {0.5} and set(scores["model_version"]) == {1}
    assert st.read_scores(engine, "odd_scores", "user", D, role="challenger").empty
    rows = st.read_score_rows(engine, "odd_scores", "user", [D, D - dt.timedelta(days=1)])
    assert len(rows) == n and set(rows["as_of_date"]) == {D} and set(rows["model_role"]) == {"champion"}


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, mlflow_db_template):
    """A trained and evaluated run of the `odd` spec (reserved words, mixed case) on a synthetic lake."""
    from batchml.datasets import prepare_training_set
    from batchml.evaluation import evaluate
    from batchml.settings import Settings
    from batchml.specs import load_spec
    from batchml.training import train_candidates
    from sample_data import REPO, write_synthetic_lake

    spec = load_spec(REPO / "tests" / "fixtures" / "specs" / "odd.yaml")
    root = tmp_path_factory.mktemp("odd")
    features_root, raw_root = write_synthetic_lake(root / "lake", spec, D, users_per_snapshot=300)
    settings = Settings(data_root=features_root.parent, landing_url=str(raw_root))
    ref = prepare_training_set(spec, settings, D, root / "run")
    return spec, evaluate(spec, train_candidates(spec, ref, trials=1)), features_root, raw_root


@pytest.mark.mlflow
@pytest.mark.gx
def test_a_use_case_with_reserved_words_and_mixed_case_is_scored_and_published(odd_run, isolated_home,
                                                                                warehouse_url):
    from batchml import gate, scoring, validation
    from batchml.partitions import snapshot_plan

    spec, evaluated, features_root, raw_root = odd_run
    settings = isolated_home(data_root=features_root.parent, landing_url=raw_root, warehouse_url=warehouse_url)
    assert gate.register_and_gate(spec, settings, evaluated, "t1").verdict == "champion"
    day = snapshot_plan(spec, D).test[-1]  # a date with a feature partition
    for label in ("first", "again"):
        pinned = scoring.pin_models(spec, settings)
        staged = scoring.score_features(spec, settings, day, pinned, f"manual__{label}", label)
        checked = validation.validate_scores(spec, settings, st.load_staging(spec, settings, staged, label), label)
        published = st.publish_scores(spec, settings, checked)
    view = sa.table("odd_scores_champion", *[sa.column(c) for c in ("user", "Group", "order", "ev_sum_Value_2d",
                                                                     "reason_1", "protective_reason", "as_of_date")])
    rows = pd.read_sql(sa.select(view), wh.engine(settings.warehouse_url))
    assert len(rows) == published.rows == 300 and rows["user"].is_unique
    assert set(rows["Group"]) <= {"north", "south"} and set(rows["order"]) <= {"first", "repeat"}
    # every row is explained: by what raises its score or, for a low score with none, by what lowers it
    assert rows["ev_sum_Value_2d"].notna().all()
    assert (rows["reason_1"].notna() | rows["protective_reason"].notna()).all() and rows["reason_1"].notna().any()
