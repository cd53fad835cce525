"""The scheduler drives the chain on the production-like stack, and independent clients check what it produced.

Data lands in the stack's S3 landing zone; the DAGs are unpaused and driven through Airflow's REST API only (a
first training run, backfills of the feature DAG); the scheduler runs everything else: scoring and monitoring follow
the feature and score assets, monitoring's retrain request starts training, and the Spark feature job runs on the
stack's Spark cluster. The drift is seen a week after it starts; its labels mature a horizon later, so monitoring
first *schedules* the retraining (status `scheduled` in the monitoring table) and requests it when the feature DAG
is backfilled on that date. Then: the score table through a plain PostgreSQL connection
(and the analysts' read-only role), the champion through MLflow's REST API, artifacts and landed files through
boto3, the Spark application in the master's status page (and the same feature table as `local[*]`), the DAG list
and a screenshot of the grid in headless Chromium.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from stacktest import POLL, chromium, screenshot

pytestmark = pytest.mark.stack

T = dt.date(2026, 7, 1)
DRIFT_START = dt.date(2026, 7, 5)
DRIFT_SEEN = dt.date(2026, 7, 13)  # a week into the drift: monitoring sees it and schedules a retraining
CHAIN = ("churn__features", "churn__scoring", "churn__monitoring", "churn__training")


@contextmanager
def client_env(stack):
    """The stack's client environment (S3 keys and endpoint, MLflow credentials) for this process."""
    keys = [k for k in stack.env if k.startswith(("AWS_", "MLFLOW_"))]
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: stack.env[k] for k in keys})
    import boto3

    # MLflow's S3 client comes from boto3's default session, which keeps the first keys it resolved in this process
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        boto3.DEFAULT_SESSION = None
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wait(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not done after {timeout:.0f} s"
        time.sleep(POLL * 4)


def _runs(api, dag_id: str) -> list[dict]:
    answer = api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "start_date"})
    assert answer.status_code == 200, answer.text
    return answer.json()["dag_runs"]


def _finished(runs: list[dict], count: int, **match) -> list[dict] | None:
    chosen = [r for r in runs if all(r.get(k) == v for k, v in match.items())]
    failed = [r for r in chosen if r["state"] == "failed"]
    assert not failed, f"failed runs: {[r['dag_run_id'] for r in failed]}"
    done = [r for r in chosen if r["state"] == "success"]
    return done if len(done) >= count else None


def _print_task_times(api, capsys) -> None:
    """Where the scheduler's time went: each finished task's duration, per DAG run (shown even when the test fails)."""
    lines = []
    for dag_id in CHAIN:
        answer = api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "start_date"})
        for run in answer.json().get("dag_runs", []) if answer.status_code == 200 else []:
            tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances").json()
            tasks = sorted(tis.get("task_instances", []), key=lambda t: t.get("start_date") or "")
            spent = ", ".join(f"{t['task_id']} {t['duration']:.0f}s" for t in tasks if t.get("duration"))
            lines.append(f"  {dag_id} {run['run_type']} {run['state']}: {spent}")
    with capsys.disabled():
        print("\ntask durations on the stack:\n" + "\n".join(lines))


def test_the_scheduler_drives_the_chain_and_clients_see_the_results(stack, tmp_path, capsys):
    api = stack.airflow_api(stack.airflow_token())
    try:
        _drive_the_chain(stack, tmp_path)
    finally:
        _print_task_times(api, capsys)


def _drive_the_chain(stack, tmp_path):
    from batchml.generate import GeneratorConfig, generate
    from batchml.storage import Landing, split_s3_url

    env = stack.env
    started = time.perf_counter()
    with client_env(stack):
        landing = Landing(env["BATCHML_LANDING_URL"])
        # to 2026-08-15: the 30-day labels of DRIFT_SEEN mature within the data
        generate(GeneratorConfig(customers=900, start=dt.date(2026, 1, 1), days=227, seed=13,
                                 drift_start=DRIFT_START, drift_strength=2.5), landing)
    api = stack.airflow_api(stack.airflow_token())
    for dag_id in CHAIN:
        _wait(f"{dag_id} parsed", lambda d=dag_id: api.get(f"/api/v2/dags/{d}").status_code == 200, 120)
        assert api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200

    # unpausing the @daily feature DAG makes a run for today, whose raw data has not landed: it waits, never fails
    today = _wait("the scheduled run of today", lambda: [r for r in _runs(api, "churn__features")
                                                         if r["run_type"] == "scheduled"], 180)[0]
    waiting = _wait("its wait_for_input", lambda: [
        ti for ti in api.get(f"/api/v2/dags/churn__features/dagRuns/{today['dag_run_id']}/taskInstances")
        .json()["task_instances"] if ti["task_id"] == "wait_for_input" and ti["state"] in
        ("up_for_reschedule", "running")], 180)
    assert waiting

    # a first model, asked for through the API
    created = api.post("/api/v2/dags/churn__training/dagRuns",
                       json={"logical_date": None, "conf": {"training_date": T.isoformat(), "reason": "e2e: first"}})
    assert created.status_code == 200, created.text
    _wait("the first training run", lambda: _finished(_runs(api, "churn__training"), 1), 1500)

    # a backfill of the feature DAG on a day after the drift; the scheduler does the rest through assets
    def backfill(day: dt.date, count: int) -> list[dict]:
        answer = api.post("/api/v2/backfills", json={
            "dag_id": "churn__features", "from_date": f"{day}T00:00:00Z", "to_date": f"{day}T00:00:00Z",
            "max_active_runs": 1, "reprocess_behavior": "completed", "run_backwards": False, "dag_run_conf": {}})
        assert answer.status_code == 200, answer.text
        _wait(f"the backfilled feature run of {day}", lambda: _finished(_runs(api, "churn__features"), count,
                                                                         run_type="backfill"), 1500)
        _wait(f"scoring of {day}", lambda: _finished(_runs(api, "churn__scoring"), count,
                                                     run_type="asset_triggered"), 900)
        return _wait(f"monitoring of {day}", lambda: _finished(_runs(api, "churn__monitoring"), count,
                                                              run_type="asset_triggered"), 900)

    import psycopg

    writer_dsn = env["BATCHML_WAREHOUSE_URL"].replace("postgresql+psycopg://", "postgresql://")
    backfill(DRIFT_SEEN, 1)
    with psycopg.connect(writer_dsn) as conn:
        scheduled = conn.execute("SELECT detail FROM churn_monitoring WHERE as_of_date = %s AND status = 'scheduled' "
                                 "AND metric = 'retrain_scheduled'", (DRIFT_SEEN,)).fetchone()
    assert scheduled, "monitoring saw the drift and scheduled a retraining for when its labels mature"
    retrain_day = dt.date.fromisoformat(scheduled[0].split(";")[0].removeprefix("training_date "))
    assert retrain_day == DRIFT_SEEN + dt.timedelta(days=30)
    assert not [r for r in _runs(api, "churn__training") if r["run_type"] == "asset_triggered"], \
        "no retraining before the drift's labels mature"
    monitored = backfill(retrain_day, 2)
    BACKFILL = (DRIFT_SEEN, retrain_day)
    retrained = _wait("the training run monitoring asked for", lambda: _finished(
        _runs(api, "churn__training"), 1, run_type="asset_triggered"), 1500)
    chain_seconds = time.perf_counter() - started
    print(f"\nscheduler chain on the stack: {chain_seconds:.0f} s (data landed, first model, "
          f"backfilled {', '.join(map(str, BACKFILL))}, scoring, monitoring, retraining)")
    assert monitored and retrained
    events = api.get("/api/v2/assets/events", params={"limit": 100}).json()["asset_events"]
    requests_ = [e for e in events if (e.get("extra") or {}).get("trigger") == "drift"]
    assert requests_ and requests_[0]["extra"]["reason"].startswith("monitoring: "), "a drift request was emitted"

    # the score table, through a plain PostgreSQL connection, and the analysts' read-only role
    with psycopg.connect(writer_dsn) as conn:
        per_day = dict(conn.execute("SELECT as_of_date, COUNT(*) FROM churn_scores_champion GROUP BY as_of_date")
                       .fetchall())
        assert set(per_day) == set(BACKFILL), per_day
        dupes = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT (customer_id, as_of_date, model_role)) "
                             "FROM churn_scores").fetchone()[0]
        unexplained = conn.execute("SELECT COUNT(*) FROM churn_scores_champion WHERE reason_1 IS NULL "
                                   "AND protective_reason IS NULL").fetchone()[0]
        assert dupes == 0 and unexplained == 0 and min(per_day.values()) > 300
    with psycopg.connect(env["BATCHML_STACK_ANALYST_DSN"]) as analyst:
        assert analyst.execute("SELECT COUNT(*) FROM churn_scores_latest").fetchone()[0] > 300
        for statement in ("DELETE FROM churn_scores_champion", "DROP VIEW churn_scores_latest",
                          "SELECT COUNT(*) FROM churn_scores", "SELECT COUNT(*) FROM model_registry_events"):
            # refused: no privilege, or (for DDL) the role's sessions are read-only
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
                analyst.execute(statement)
            analyst.rollback()

    # MLflow's REST API: the champion alias, its run, and the retraining run with its reason
    import requests

    mlflow_url, auth = stack.urls["mlflow"], stack.mlflow_auth()
    alias = requests.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/alias",
                         params={"name": "churn", "alias": "champion"}, auth=auth, timeout=30)
    assert alias.status_code == 200, alias.text
    champion = alias.json()["model_version"]
    versions = requests.get(f"{mlflow_url}/api/2.0/mlflow/model-versions/search", params={"filter": "name='churn'"},
                            auth=auth, timeout=30).json()["model_versions"]
    assert sorted(int(v["version"]) for v in versions) == [1, 2]
    v2 = next(v for v in versions if v["version"] == "2")
    run = requests.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": v2["run_id"]}, auth=auth,
                       timeout=30).json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["batchml.trigger"] == "drift" and tags["batchml.reason"].startswith("monitoring: ")
    assert tags["batchml.gate_verdict"] in ("champion", "challenger", "rejected")
    assert champion["version"] in ("1", "2")

    # boto3 on the S3 endpoint: the landed files and the models' artifacts
    s3 = stack.s3()
    bucket, prefix = split_s3_url(env["BATCHML_LANDING_URL"])
    landed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/transactions/dt={DRIFT_SEEN}/")
    assert landed.get("KeyCount", 0) >= 1
    art_bucket, art_prefix = split_s3_url(env["BATCHML_MLFLOW_ARTIFACT_ROOT"])
    artifacts = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=art_bucket,
                                                                                   Prefix=art_prefix)
                 for o in page.get("Contents", [])]
    # MLflow 3 keeps a logged model under <experiment>/models/m-<id>/artifacts/
    assert any(k.endswith("model_card.html") for k in artifacts) and any(k.endswith("/MLmodel") for k in artifacts)

    # the Spark master: the feature job ran on the cluster, not in local mode
    status = requests.get(f"{stack.urls['spark-master-ui']}/json/", timeout=30).json()
    apps = [a["name"] for a in status.get("completedapps", []) + status.get("activeapps", [])]
    assert any(name.startswith("churn__features-build_features") for name in apps), apps
    app_id = next(a["id"] for a in status["completedapps"] if a["name"].startswith("churn__features"))
    print(f"Spark application on the master: {app_id}")
    _same_features_as_local(stack, DRIFT_SEEN, tmp_path)

    # what a person sees: the DAG list, and the grid in a browser
    dags = {d["dag_id"] for d in api.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
    assert set(CHAIN) <= dags
    assert api.get("/api/v2/importErrors").json()["total_entries"] == 0
    if chromium() is None:
        print("Chromium is not installed: no screenshot of the grid (.ci/run installs it)")
        return
    shot = screenshot(f"{env['BATCHML_STACK_AIRFLOW_URL']}/dags/churn__scoring", tmp_path / "grid.png",
                      cookies=[{"name": "_token", "value": stack.airflow_token(), "domain": "127.0.0.1",
                                "path": "/"}], wait_for="publish_scores")  # a task of the grid: the page has loaded
    assert shot.stat().st_size > 20_000
    keep = Path(os.environ.get("BATCHML_SCREENSHOTS", tmp_path))
    keep.mkdir(parents=True, exist_ok=True)
    (keep / "airflow-grid-churn__scoring.png").write_bytes(shot.read_bytes())


def _same_features_as_local(stack, day: dt.date, tmp_path: Path) -> None:
    """The partition the cluster published equals the same job run here in local mode on the same landed files."""
    import pandas as pd

    from batchml.features import run_feature_job
    from batchml.partitions import partitions_read
    from batchml.spark import local_spark_session
    from batchml.specs import load_spec
    from batchml.storage import Landing, feature_partition_file

    env = stack.env
    spec = load_spec(Path(stack.state.state["specs_dir"]) / "churn.yaml")
    with client_env(stack):
        landing = Landing(env["BATCHML_LANDING_URL"])
        raw_root = landing.local_view(partitions_read(spec, landing, day), tmp_path / "mirror")
    published = pd.read_parquet(feature_partition_file(Path(env["BATCHML_DATA_ROOT"]) / "features", "churn", day))
    spark = local_spark_session("local[2]", "e2e-compare")
    local = pd.read_parquet(run_feature_job(spark, spec, raw_root, day, tmp_path / "local").staged_file)
    pd.testing.assert_frame_equal(published.sort_values("customer_id").reset_index(drop=True),
                                  local.sort_values("customer_id").reset_index(drop=True), check_exact=False,
                                  rtol=1e-9)
