"""Dates and small data sets the tests share: imported by tests/conftest.py and by test files (importing `conftest`
by name is ambiguous once tests/e2e has a conftest of its own)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL_START = dt.date(2026, 1, 1)
SMALL_DAYS = 100
SMALL_AS_OF = dt.date(2026, 4, 8)  # 97 days after the start: every partition of the 90-day window has landed
TINY_TRAINING_DATE = dt.date(2026, 6, 1)
DRIFT_START = dt.date(2026, 7, 5)
SMALL_TRAINING_DATE = dt.date(2026, 7, 1)  # tests train on `training_landing` as of this date


def write_synthetic_lake(root: Path, spec, training_date: dt.date, users_per_snapshot: int = 400, seed: int = 0,
                         signal: float = 2.0):
    """Feature partitions for every planned snapshot of `spec` and label events in the raw landing zone, with a
    label that depends on two features (so a model has something to learn). Returns (features_root, raw_root)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from batchml.partitions import snapshot_plan
    from batchml.specs import AS_OF_COLUMN
    from batchml.storage import Landing, feature_partition_dir

    rng = np.random.default_rng(seed)
    features_root, raw = root / "features", Landing(str(root / "landing"))
    key, label_src = spec.entity.key, spec.label.source
    ts_col = spec.sources[label_src].timestamp
    cols = spec.feature_columns()
    events = []
    for s in snapshot_plan(spec, training_date).all:
        n = users_per_snapshot
        frame = pd.DataFrame({key: [f"u{s:%m%d}_{i}" for i in range(n)], AS_OF_COLUMN: s})
        for col, kind in cols.items():
            if kind == "categorical":
                allowed = spec.entity_source.columns[col].allowed or ["x", "y"]
                frame[col] = rng.choice(allowed, n)
            elif kind == "count":
                frame[col] = rng.poisson(3, n).astype("int64")
            elif kind == "share":
                frame[col] = rng.random(n)
            else:
                frame[col] = rng.gamma(2.0, 2.0, n)
        numeric = [c for c, k in cols.items() if k != "categorical"]
        a, b = (frame[c].rank(pct=True).to_numpy() for c in numeric[:2])
        # a step, a bump and an interaction: learnable, but not by a linear model alone
        logit = -2.0 + signal * ((a > 0.7) + ((b > 0.3) & (b < 0.6)) * (a < 0.5) - 0.8 * (b > 0.9))
        positive = rng.random(n) < 1 / (1 + np.exp(-logit))
        part = feature_partition_dir(features_root, spec.name, s)
        part.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(part / "part-0.parquet", index=False)
        start = pd.Timestamp(s, tz="UTC")
        for uid in frame.loc[positive, key]:
            events.append({key: uid, ts_col: start + pd.Timedelta(days=float(rng.uniform(0, spec.label.horizon_days)))})
    schema = pa.schema([(key, pa.string()), (ts_col, pa.timestamp("us", tz="UTC"))])
    by_day: dict = {}
    for e in events:
        by_day.setdefault(e[ts_col].date(), []).append(e)
    first = min(by_day)
    day = first
    while day < training_date:
        rows = by_day.get(day, [])
        raw.write_partition_file(label_src, day, "part-0.parquet", pa.Table.from_pylist(rows, schema=schema))
        day += dt.timedelta(days=1)
    return features_root, Path(raw.url)


def copy_training_snapshots(features_root: Path, settings) -> None:
    """Publish the prebuilt snapshots (the `training_snapshots` fixture) into the features root of `settings`."""
    import shutil

    shutil.copytree(features_root, settings.features_root, dirs_exist_ok=True)
