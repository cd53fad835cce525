"""Running a generated DAG in-process with a real Airflow (`dag.test()`), for the tests in this folder."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass
class DagTestRun:
    state: str
    states: dict[str, str]
    values: dict[str, object]
    """Return values (XComs) of the tasks that succeeded."""

    def value(self, task_id: str):
        return self.values.get(task_id)


def run_for_day(dag, day: dt.date, conf: dict | None = None) -> DagTestRun:
    """Run `dag` for logical date `day` (midnight UTC) with `conf`; returns the run's state, task states and values."""
    from airflow.utils.session import create_session

    run = dag.test(logical_date=dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC), run_conf=conf)
    with create_session() as session:
        tis = run.get_task_instances(session=session)
        states = {ti.task_id: ti.state for ti in tis}
        values = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id, session=session) for ti in tis if ti.state == "success"}
    return DagTestRun(run.state, states, values)
