"""The session's stack switched to `--celery` in place (runs after test_stack.py): `bin/stack up --celery` on the
running stack starts Redis and a Celery worker and restarts Airflow's components with the CeleryExecutor, while
PostgreSQL, S3, MLflow and Spark keep running (a full `down` and `up` took about 1.6 times as long). The switch
keeps the ports, the credentials and what PostgreSQL holds; Redis refuses clients without its password; a task runs
in the Celery worker."""

from __future__ import annotations

import pytest
from stacktest import missing_requirement

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def celery_stack(stack, request):
    reason = missing_requirement(celery=True)
    if reason:
        pytest.skip(f"the Celery variant cannot start here: {reason}")
    before = {"ports": stack.ports, "env": stack.env}
    import requests

    # something to find again after the switch: an MLflow experiment (in PostgreSQL)
    name = "e2e-survives-restart"
    created = requests.post(f"{stack.urls['mlflow']}/api/2.0/mlflow/experiments/create", json={"name": name},
                            auth=stack.mlflow_auth(), timeout=30)
    assert created.status_code == 200, created.text
    stack.up("--celery")
    assert "switching from the LocalExecutor" in stack.up_output, stack.up_output
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\nbin/stack up --celery, switching the running stack: healthy in {stack.up_seconds:.1f} s")
    return stack, before, name


def test_restart_keeps_ports_credentials_and_data(celery_stack):
    import requests

    stack, before, name = celery_stack
    assert {k: v for k, v in stack.ports.items() if k in before["ports"]} == before["ports"]
    after = stack.env
    for key, value in before["env"].items():
        if key not in ("AIRFLOW__CORE__EXECUTOR",):
            assert after[key] == value, f"{key} changed across the restart"
    assert after["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    found = requests.get(f"{stack.urls['mlflow']}/api/2.0/mlflow/experiments/get-by-name",
                         params={"experiment_name": name}, auth=stack.mlflow_auth(), timeout=30)
    assert found.status_code == 200, found.text


def test_redis_and_the_celery_worker_are_healthy_and_redis_wants_its_password(celery_stack):
    import time

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    stack, _, _ = celery_stack
    health = stack.state.health()
    assert health["redis"][0] and health["airflow-celery-worker"][0], health
    # every other service too; on a loaded machine a component's heartbeat can lag past Airflow's 30 s threshold
    # for a moment, so each gets a minute to answer healthy again (named if it does not)
    deadline = time.monotonic() + 60
    unhealthy = {n: why for n, (ok, why) in health.items() if not ok}
    while unhealthy and time.monotonic() < deadline:
        time.sleep(5)
        unhealthy = {n: why for n, (ok, why) in stack.state.health(list(unhealthy)).items() if not ok}
    assert not unhealthy, unhealthy
    port = stack.ports["redis"]
    with pytest.raises(redis.AuthenticationError):  # without retries: redis-py retries a refused login for ~10 s
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0)).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=5).ping()
    assert redis.Redis.from_url(stack.env["BATCHML_STACK_REDIS_URL"], socket_timeout=5).ping()


def test_a_task_runs_in_the_celery_worker(celery_stack):
    stack, _, _ = celery_stack
    run, tis = stack.run_dag("churn__model_admin", {"action": "rollback", "reason": "e2e: celery"}, timeout=300)
    ti = tis[0]
    assert ti["state"] in ("success", "failed") and ti["try_number"] == 1, ti
    text = stack.task_log(ti)
    assert "Connection refused" not in text, text[-3000:]
    worker_log = (stack.root / "logs" / "airflow-celery-worker.log").read_text()
    assert "Executing workload in Celery" in worker_log and run["dag_run_id"] in worker_log
