"""Date and partition planning without Spark: which snapshots a training run uses."""

import datetime as dt

from batchml.partitions import SPLITS, snapshot_plan
from batchml.specs import UseCaseSpec


def _with(spec: UseCaseSpec, **training) -> UseCaseSpec:
    data = spec.model_dump()
    for key, value in training.items():
        data["training"][key] = value
    return UseCaseSpec.model_validate(data)


def test_snapshot_plan_is_by_time_with_purge_gaps(churn_spec):
    plan = snapshot_plan(churn_spec, dt.date(2026, 7, 1))
    horizon = dt.timedelta(days=churn_spec.label.horizon_days)
    assert plan["test"][-1] == dt.date(2026, 7, 1) - horizon  # newest label has just matured
    assert [len(plan[s]) for s in SPLITS] == [8, 2, 2]
    assert max(plan["train"]) + horizon <= min(plan["valid"])  # no outcome seen in two blocks
    assert max(plan["valid"]) + horizon <= min(plan["test"])
    every = sorted(s for name in SPLITS for s in plan[name])
    assert every == sorted(set(every))


def test_without_purge_blocks_are_adjacent(churn_spec):
    spec = _with(churn_spec, split={"every_days": 7, "train": 3, "validation": 1, "test": 1, "purge": False})
    plan = snapshot_plan(spec, dt.date(2026, 7, 1))
    days = [s for name in SPLITS for s in plan[name]]
    assert all((b - a).days == 7 for a, b in zip(days, days[1:], strict=False))
