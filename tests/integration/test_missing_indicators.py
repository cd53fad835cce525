"""A filled value is not an observed one: the Spark feature job writes `<column>_was_missing` (1 where the value was
missing and filled) next to the filled column, for the model to learn from and for reason codes to show as missing."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]
LANDED = dt.date(2026, 11, 1)


def _spec():
    from batchml.specs import load_spec

    return load_spec(REPO / "docs" / "examples" / "subscriptions.yaml")  # fill: {nps: 5}


def test_the_feature_job_marks_filled_values(spark, tmp_path):
    from batchml.features import build_features
    from batchml.ingest import ingest

    spec = _spec()
    assert spec.features.indicator_columns() == {"nps_was_missing": "share"}
    rng = np.random.default_rng(0)
    n = 200
    nps = np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 11, n)).astype(float)
    nps[:3] = 5.0  # observed answers equal to the fill value: not missing
    frame = pd.DataFrame({"Account ID": [f"A{i:04d}" for i in range(n)], "plan": "basic", "country": "DE",
                          "seats": 2, "monthly_fee": 38.0, "tenure_months": 5, "logins_30d": 9, "tickets_90d": 1,
                          "nps": nps, "cancelled": np.where(np.arange(n) % 4 == 0, "yes", "no")})
    frame.to_csv(tmp_path / "accounts.csv", index=False)
    landing = tmp_path / "landing"
    ingest(spec, "accounts", str(tmp_path / "accounts.csv"), LANDED, str(landing))
    table = build_features(spark, spec, landing, LANDED + dt.timedelta(days=1)).toPandas().sort_values("account_id")
    missing = np.isnan(nps)
    assert table.nps_was_missing.tolist() == missing.astype(int).tolist()
    assert (table.nps[missing] == 5.0).all()  # what the model sees: the fill value
    assert set(spec.feature_columns()) <= set(table.columns)
