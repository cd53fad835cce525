"""A snapshot use case of the tests' own, built without Spark: a spec with a column label and a random split, and
a training set drawn from a known outcome model, saved like the training DAG saves one (tuning, evaluation,
fairness and gate tests start from it).

The outcome has steps and an interaction (trees can beat a linear model), and `young_effect` plants a disparity:
the `18-34` age band churns (and so is flagged) more often. `region` has no effect at all.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

TRAINING_DATE = dt.date(2026, 11, 2)
AGE_BANDS = ["18-34", "35-54", "55+"]


def snapshot_spec(training: dict | None = None, **top):
    """The spec, with `training` keys (and top-level keys) merged over small-budget defaults."""
    from batchml.specs import UseCaseSpec

    data = {
        "name": "accounts", "description": "Synthetic accounts of the tests.", "start_date": dt.date(2026, 11, 1),
        "entity": {"key": "account_id", "source": "accounts"},
        "sources": {"accounts": {"kind": "snapshot", "columns": {
            "account_id": {"type": "string", "unique": True},
            "plan": {"type": "string", "allowed": ["basic", "pro", "team"]},
            "region": {"type": "string", "allowed": ["north", "south"]},
            "age_band": {"type": "string", "allowed": AGE_BANDS},
            "usage": {"type": "double"}, "tenure": {"type": "double"}, "tickets": {"type": "int"},
            "churned": {"type": "string", "allowed": ["no", "yes"]}}}},
        "label": {"kind": "column", "name": "churned", "column": "churned", "positive": "yes"},
        "features": {"schedule": None, "tenure": False, "static": ["plan", "region", "age_band"],
                     "numeric": ["usage", "tenure", "tickets"]},
        "training": {"schedule": None, "split": {"kind": "random", "validation": 0.2, "test": 0.25, "seed": 3},
                     "cv_folds": 3, "tuning": {"trials": 3, "timeout_seconds": 60},
                     "confidence": {"resamples": 200}, "min_rows": 200, "min_positives": 20, "shap_sample": 200,
                     "gate": {"floors": {"roc_auc": 0.6}}, **(training or {})},
        "scoring": {"schedule": None, "bands": {"high": 0.6, "medium": 0.35}},
        **top,
    }
    return UseCaseSpec.model_validate(data)


def accounts(rows: int = 2400, seed: int = 0, young_effect: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "team"], rows, p=[0.5, 0.3, 0.2])
    age = rng.choice(AGE_BANDS, rows, p=[0.35, 0.4, 0.25])
    usage = rng.gamma(2.0, 5.0, rows)
    tenure = rng.uniform(0, 60, rows)
    tickets = rng.poisson(1.0, rows)
    logit = (-1.3 + 1.6 * (usage < 5) + 0.6 * tickets * (plan == "basic") - 0.8 * ((tenure > 36) & (plan != "basic"))
             + young_effect * (age == "18-34"))
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"account_id": [f"a{i:05d}" for i in range(rows)], "plan": plan,
                         "region": rng.choice(["north", "south"], rows), "age_band": age, "usage": usage,
                         "tenure": tenure, "tickets": tickets.astype("int64"), "label": churned.astype("int8")})


def training_set(spec, frame: pd.DataFrame):
    """The training set the DAG's build step would make of this table (stratified random split, lineage)."""
    from batchml.datasets import TrainingSet, content_hash, random_split
    from batchml.partitions import SPLITS
    from batchml.specs import AS_OF_COLUMN

    columns = spec.feature_columns()
    features = list(columns)
    frame = frame.assign(**{AS_OF_COLUMN: TRAINING_DATE})[[spec.entity.key, AS_OF_COLUMN, *features, "label"]]
    frames = random_split(frame, spec.training.split)
    lineage = {"training_date": TRAINING_DATE.isoformat(), "split": "random",
               "snapshots": {s: [TRAINING_DATE.isoformat()] for s in SPLITS},
               "partitions": {s: ["synthetic"] for s in SPLITS}, "rows": {s: len(f) for s, f in frames.items()},
               "label_rate": {s: round(float(f["label"].mean()), 5) for s, f in frames.items()},
               "data_hash": content_hash(frames), "horizon_days": 0}
    return TrainingSet(frames, features, [c for c, k in columns.items() if k == "categorical"], lineage)


def saved_run(spec, frame: pd.DataFrame, folder: Path):
    """The training set saved in a run folder; returns the TrainingSetRef the training step takes."""
    from batchml.results import TrainingSetRef

    ts = training_set(spec, frame)
    ts.save(folder / "data")
    return TrainingSetRef(run_dir=str(folder), training_date=TRAINING_DATE, rows=ts.lineage["rows"],
                          label_rate=ts.lineage["label_rate"], data_hash=ts.lineage["data_hash"])
