"""The README's queries for analysts, as written, against a churn score table holding two consecutive scored days
(SQLite, with the README's one substitution, and PostgreSQL): each returns rows, with the columns it names."""

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from batchml import score_table as st
from batchml import warehouse as wh

README = Path(__file__).resolve().parents[2] / "README.md"
DAYS = [dt.date(2026, 7, 7), dt.date(2026, 7, 8)]


def _queries() -> list[str]:
    section = README.read_text().split("## For analysts", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    return [q.strip() for q in block.split(";") if q.strip()]


def _scores(spec, eng) -> None:
    rng = np.random.default_rng(2)
    columns = st.score_table_columns(spec)
    schema = st.arrow_schema(columns)
    st.ensure_table(eng, spec.score_table, columns)
    n = 300
    for day in DAYS:
        score = rng.beta(1.2, 6, n)
        decile = (1 + np.sum(score[:, None] < np.quantile(score, np.linspace(0.9, 0.1, 9))[None, :], axis=1))
        data = {f.name: [None] * n for f in schema}
        reason = np.where(score > 0.3, "tickets_share_reason_cancellation_90d", "txn_count_7d")
        data.update({
            "customer_id": [f"C{i:04d}" for i in range(n)], "as_of_date": [day] * n,
            "model_role": ["champion"] * n, "score": score.tolist(), "risk_decile": decile.tolist(),
            "risk_band": np.where(score >= 0.3, "high", np.where(score >= 0.1, "medium", "low")).tolist(),
            "reason_1": reason.tolist(), "reason_1_description": reason.tolist(),
            "reason_1_value": ["0.5"] * n, "reason_1_number": [0.5] * n, "reason_1_impact": [0.4] * n,
            "plan": rng.choice(["basic", "premium"], n).tolist(), "region": rng.choice(["north", "west"], n).tolist(),
            "age_band": ["25-34"] * n, "reasons_exact": [True] * n, "model_name": ["churn"] * n,
            "model_version": [1] * n, "airflow_run_id": ["r"] * n,
            "scored_at": [pd.Timestamp("2026-07-08", tz="UTC")] * n})
        staging = wh.staging_name(spec.score_table, day, "q")
        st.sql_table(staging, columns, keyed=False, day=day).create(eng)
        wh.bulk_load(eng, staging, [pa.RecordBatch.from_pydict(data, schema=schema)], schema)
        wh.publish_partition(eng, spec.score_table, staging, day)


def test_the_readme_queries_return_rows(churn_spec, warehouse_url):
    eng = wh.create_engine(warehouse_url)
    _scores(churn_spec, eng)
    queries = _queries()
    assert len(queries) == 4
    for sql in queries:
        if eng.dialect.name == "sqlite":
            sql = sql.replace("t.as_of_date - 1", "date(t.as_of_date, '-1 day')")  # as the README says
        frame = pd.read_sql(sql, eng)
        assert len(frame) > 0, sql
    changed = pd.read_sql(queries[-1].replace("t.as_of_date - 1", "date(t.as_of_date, '-1 day')")
                          if eng.dialect.name == "sqlite" else queries[-1], eng)
    assert (changed.score_today != changed.score_yesterday).all() and "main_reason_today" in changed
    eng.dispose()
