"""Running generated DAGs in this process with Airflow's `dag.test()`, one after the other (the demo, `batchml
backfill`): Airflow, Great Expectations, MLflow and the Spark JVM are loaded once for every run instead of once per
run, each run's whole output goes to its own log file, and the run keeps its real start time (`dag.test` records
the logical date as the start, which shows as months-long runs in the UI).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batchml.settings import Settings
from batchml.specs import UseCaseSpec

BUILDERS = {
    "features": ("batchml.pipelines.features", "build_dag"),
    "training": ("batchml.pipelines.training", "build_training_dag"),
    "model_admin": ("batchml.pipelines.training", "build_model_admin_dag"),
    "scoring": ("batchml.pipelines.scoring", "build_dag"),
    "monitoring": ("batchml.pipelines.monitoring", "build_dag"),
}


@dataclass
class LocalRun:
    dag_id: str
    day: dt.date
    state: str
    seconds: float
    log_file: Path

    @property
    def ok(self) -> bool:
        return self.state == "success"


@contextmanager
def output_to(path: Path):
    """Send everything written to stdout and stderr (Python's and the JVM's) to `path` while inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


_dags: dict[tuple[str, str], object] = {}


def build(spec: UseCaseSpec, settings: Settings, kind: str):
    """The DAG of `kind` for `spec` (built once per process)."""
    import importlib

    key = (spec.name, kind)
    if key not in _dags:
        module, function = BUILDERS[kind]
        _dags[key] = getattr(importlib.import_module(module), function)(spec, settings)
    return _dags[key]


def run_dag(spec: UseCaseSpec, settings: Settings, kind: str, day: dt.date, conf: dict | None, log_file: Path) -> LocalRun:
    """Run one DAG for `day` in this process, its output in `log_file`; the run keeps its real start time."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    real_start = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    state = "failed"
    dag_id = spec.dag_id(kind)
    with output_to(log_file):
        try:
            dag = build(spec, settings, kind)  # inside: building a DAG can warn on stderr
            run = dag.test(logical_date=dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC), run_conf=conf)
            state = str(getattr(run.state, "value", run.state))
            with create_session() as session:
                stored = session.get(DagRun, run.id)
                if stored is not None:
                    stored.start_date = real_start
                    stored.end_date = stored.end_date or dt.datetime.now(dt.UTC)
        except Exception:  # noqa: BLE001 - the log file has the trace; the caller reports the failed run
            import traceback

            traceback.print_exc()
    return LocalRun(dag_id, day, state, time.perf_counter() - started, log_file)
