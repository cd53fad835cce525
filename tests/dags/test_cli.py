"""The `batchml` command: check, generate, and backfill through real `airflow dags test` processes."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

BATCHML = str(Path(sys.executable).with_name("batchml"))


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BATCHML, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_check_lists_the_generated_dags():
    done = _cli("check")
    assert done.returncode == 0, done.stderr
    assert "churn: DAGs churn__features" in done.stdout


def test_check_reports_a_bad_setting_and_exits_2():
    done = _cli("check", env={"BATCHML_WAREHOUSE_URL": "nonsense"})
    assert done.returncode == 2
    assert "BATCHML_WAREHOUSE_URL='nonsense'" in done.stderr and "Traceback" not in done.stderr


def test_generate_prints_what_it_landed(tmp_path):
    done = _cli("generate", "--customers", "50", "--days", "3", "--landing", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"Landed 2026-01-01..2026-01-03 into {tmp_path}" in done.stdout
    assert "transactions" in done.stdout
    assert (tmp_path / "transactions" / "dt=2026-01-03").is_dir()


def test_generate_fraud_lands_the_four_sources_and_says_what_next(tmp_path):
    args = ("generate-fraud", "--cards", "200", "--merchants", "100", "--transactions-per-day", "300", "--days", "3",
            "--landing", str(tmp_path))
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"Landed 2026-01-01..2026-01-03 into {tmp_path}" in done.stdout
    for source in ("cards", "merchants", "card_transactions", "chargebacks"):
        assert source in done.stdout
    assert "Next: airflow dags test fraud__features 2026-01-04" in done.stdout
    assert (tmp_path / "card_transactions" / "dt=2026-01-03").is_dir()
    again = _cli(*args)  # the marker remembers the config: nothing is rewritten
    assert again.returncode == 0 and "reused (same config already landed" in again.stdout, again.stderr


@pytest.mark.airflow
@pytest.mark.spark
def test_backfill_runs_each_date_independently(airflow_db, small_landing, small_as_of, tmp_path):
    env = {"BATCHML_HOME": str(tmp_path / "home"), "BATCHML_LANDING_URL": small_landing.url}
    first, last = small_as_of - dt.timedelta(days=1), small_as_of
    began = dt.datetime.now(dt.UTC)
    done = _cli("backfill", "churn__features", "--from", first.isoformat(), "--to", last.isoformat(), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 runs succeeded" in done.stdout
    # the UI shows each run's real start and duration, not the logical date as its start (months-long runs)
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.scalars(sa.select(DagRun).where(DagRun.dag_id == "churn__features",
                                                       DagRun.start_date >= began)).all()
    assert {r.logical_date.date() for r in runs} >= {first, last}
    assert all(r.end_date - r.start_date < dt.timedelta(minutes=30) for r in runs), \
        [(r.start_date, r.end_date) for r in runs]
    for day in (first, last):
        assert (tmp_path / "home" / "data" / "features" / "churn" / f"dt={day}" / "part-0.parquet").exists()
        assert (tmp_path / "home" / "logs" / "dag-runs" / f"churn__features_{day}.log").exists()

    too_early = "2026-01-05"  # its 90-day window starts before the data does
    done = _cli("backfill", "churn__features", "--from", too_early, "--to", too_early, env=env)
    assert done.returncode == 1
    assert "0 of 1 runs succeeded" in done.stdout
    assert "have not landed" in done.stdout, done.stdout  # the reason is shown, not just "failed"
    assert f"Failed: {too_early}" in done.stdout
