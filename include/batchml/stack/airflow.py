"""The stack's Airflow: the metadata DB migration (skipped when already at this version's head), the components
(api-server, scheduler, dag-processor, triggerer, and the Celery worker with --celery) started from the `airflow`
command with one shared configuration, and their health from /api/v2/monitor/health.

Airflow itself is never imported here (importing airflow.* would reconfigure this process's logging): everything
goes through its command line and its HTTP API."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time

import batchml.stack.celery as celery
from batchml.stack.environment import airflow_env, pipeline_env
from batchml.stack.processes import base_env, spawn, started_at
from batchml.stack.state import AIRFLOW_ADMIN, BIN, HOST, PARALLELISM, StackError, StackState, write_private

# the Airflow components /api/v2/monitor/health reports on, by its keys
HEALTH_KEYS = {"airflow-scheduler": "scheduler", "airflow-dag-processor": "dag_processor",
               "airflow-triggerer": "triggerer"}


def version() -> str:
    from importlib.metadata import version as installed_version

    return installed_version("apache-airflow-core")


def process_env(stack: StackState) -> dict[str, str]:
    return {**base_env(), **pipeline_env(stack), **airflow_env(stack)}


def write_passwords(stack: StackState) -> None:
    stack.airflow_home.mkdir(mode=0o700, exist_ok=True)
    # SimpleAuthManager reads the admin's password from this file (and only generates one for missing users)
    write_private(stack.airflow_home / "passwords.json", json.dumps({AIRFLOW_ADMIN: stack.secret["airflow_admin"]}))


def db_revision(stack: StackState) -> str | None:
    import psycopg

    try:
        with psycopg.connect(stack.pg_url("airflow", "postgresql"), connect_timeout=5) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def db_current(stack: StackState) -> bool:
    """True when `airflow db migrate` ran with this Airflow version and the schema has not moved since: saves
    its 20-30 s (importing every migration) on a restart."""
    done = stack.state.get("airflow_db") or {}
    current = done.get("airflow") == version() and done.get("revision") == db_revision(stack)
    if current:
        write_passwords(stack)
    return current


def start_migration(stack: StackState) -> subprocess.Popen:
    """`airflow db migrate` in the background (finish it with `finish_migration`)."""
    write_passwords(stack)
    out = open(stack.logs / "airflow-db-migrate.log", "ab")  # noqa: SIM115 - closed by finish_migration
    out.write(f"\n=== {dt.datetime.now().isoformat(timespec='seconds')} airflow db migrate\n".encode())
    out.flush()
    env = {**process_env(stack), "BATCHML_STACK_MARKER": stack.marker}
    proc = subprocess.Popen([str(BIN / "airflow"), "db", "migrate"], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, cwd=stack.root, start_new_session=True)
    proc.log = out  # type: ignore[attr-defined]
    return proc


def finish_migration(stack: StackState, proc: subprocess.Popen, deadline: float) -> None:
    """Wait for the migration; record the revision it left, so that the next `up` can skip it."""
    try:
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    finally:
        proc.log.close()  # type: ignore[attr-defined]
    if code != 0:
        path = stack.logs / "airflow-db-migrate.log"
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-25:])
        what = "timed out" if code is None else f"failed (exit {code})"
        raise StackError(f"airflow db migrate {what}; the end of {path}:\n{tail}")
    stack.state["airflow_db"] = {"airflow": version(), "revision": db_revision(stack)}
    stack.save_state()


def start(stack: StackState, name: str) -> None:
    airflow = str(BIN / "airflow")
    argv = {
        "airflow-api-server": [airflow, "api-server", "--host", HOST, "--port", str(stack.ports["airflow_api"]),
                               "--workers", "1"],
        # logs are read from the shared log folder: no log server ports (they would listen on every address)
        "airflow-scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "airflow-dag-processor": [airflow, "dag-processor"],
        "airflow-triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        "airflow-celery-worker": [airflow, "celery", "worker", "--skip-serve-logs",
                                  "--concurrency", str(PARALLELISM)],
    }[name]
    spawn(stack, name, argv, process_env(stack))


def health_json(stack: StackState) -> dict:
    import requests

    return requests.get(f"{stack.urls['airflow-api-server']}/api/v2/monitor/health", timeout=5).json()


def health(stack: StackState, name: str, answer: dict) -> tuple[bool, str]:
    """One component's health from the API server's health answer (`health_json`), or a Celery ping."""
    if name == "airflow-api-server":
        status = answer.get("metadatabase", {}).get("status")
        return status == "healthy", f"/api/v2/monitor/health answers, metadatabase {status}"
    if name == "airflow-celery-worker":
        return celery.health_worker(stack)
    key = HEALTH_KEYS[name]
    entry = answer.get(key) or {}
    beat = entry.get(f"latest_{key}_heartbeat")
    since = started_at(stack, name) or 0
    if entry.get("status") != "healthy" or not beat:
        return False, f"{key}: {entry.get('status')}"
    # a job of a previous run may still look alive: count only heartbeats of this process
    if dt.datetime.fromisoformat(beat).timestamp() < since:
        return False, "waiting for the first heartbeat"
    return True, f"{key} healthy, heartbeat {beat[11:19]} UTC"
