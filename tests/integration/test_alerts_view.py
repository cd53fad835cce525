"""The alerts view of a score table with a daily alert budget (issue 17, fraud): each date's top champion rows
within the budget, most suspicious first, on SQLite and PostgreSQL."""

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from batchml import warehouse as wh
from batchml.score_table import ALERT_COLUMNS, ensure_table, score_columns

pytestmark = pytest.mark.postgres


def _rows(columns, day: dt.date, n: int, role: str, seed: int) -> pd.DataFrame:
    """`n` score rows of one date and model role, every column filled."""
    rng = np.random.default_rng(seed)
    values = {"string": lambda c: [f"{c.name}_{i}" for i in range(n)], "double": lambda c: rng.random(n),
              "smallint": lambda c: np.ones(n, dtype="int16"), "int": lambda c: np.ones(n, dtype="int32"),
              "bool": lambda c: np.ones(n, dtype=bool), "date": lambda c: [day] * n,
              "timestamp": lambda c: [pd.Timestamp("2026-05-01", tz="UTC")] * n}
    frame = pd.DataFrame({c.name: values[c.kind](c) for c in columns})
    frame["transaction_id"] = [f"t{day:%m%d}_{i:04d}" for i in range(n)]
    frame["model_role"], frame["as_of_date"] = role, day
    frame["score"] = np.round(rng.random(n), 2)  # ties, broken by key
    return frame


def test_the_alerts_view_holds_each_days_top_rows_within_the_budget(warehouse_url):
    columns = score_columns("transaction_id", 3)
    eng = wh.create_engine(warehouse_url)
    ensure_table(eng, "fraud_scores", columns, alert_budget=0.005)
    days = {dt.date(2026, 5, 1): 1000, dt.date(2026, 5, 2): 1999, dt.date(2026, 5, 3): 150}
    frames = [_rows(columns, day, n, role, seed=i)
              for i, (day, n) in enumerate(days.items()) for role in ("champion", "challenger")]
    if eng.dialect.name == "postgresql":  # the table is partitioned by date: each date needs its partition
        import sqlalchemy as sa

        with eng.begin() as conn:
            for day in days:
                conn.execute(sa.text(f"CREATE TABLE fraud_scores_{day:%Y%m%d} PARTITION OF fraud_scores "
                                     f"FOR VALUES IN ('{day}')"))
    pd.concat(frames).to_sql("fraud_scores", eng, if_exists="append", index=False)

    alerts = pd.read_sql('SELECT * FROM "fraud_scores_alerts"', eng)
    assert list(alerts.columns[:2]) == list(ALERT_COLUMNS)
    alerts["as_of_date"] = pd.to_datetime(alerts["as_of_date"]).dt.date
    for (day, n), frame in zip(days.items(), frames[::2], strict=True):
        got = alerts[alerts.as_of_date == day]
        k = math.ceil(0.005 * n)  # 5, 10, 1
        want = frame.sort_values(["score", "transaction_id"], ascending=[False, True]).head(k)
        assert list(got.transaction_id) == list(want.transaction_id), day  # most suspicious first
        assert list(got.alert_rank) == list(range(1, k + 1)) and (got.day_rows == n).all()
    assert list(pd.unique(alerts.as_of_date)) == sorted(days, reverse=True), "newest date first"
    # the budget follows the spec: ensuring the table again with another budget redefines the view
    ensure_table(eng, "fraud_scores", columns, alert_budget=0.01)
    assert len(pd.read_sql('SELECT * FROM "fraud_scores_alerts"', eng)) == 10 + 20 + 2
