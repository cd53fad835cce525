"""The no-Docker stack (`bin/stack`, batchml.stack) started once per session in a temporary state folder.

`stack` (session scope) runs `bin/stack up` into a fresh BATCHML_STACK_DIR, yields a `RunningStack` and always runs
`bin/stack down --purge` at the end, even when a test or the start-up failed; it then checks that nothing listens on
the stack's ports any more. Where something the stack needs is missing (PostgreSQL server binaries, java, and for
`--celery` redis-server), the tests are skipped with the reason; `.ci/run` installs what CI needs.

Tests talk to the services with their own clients, as a user would, using the generated `stack.env`:
    stack.env                      the parsed stack.env (every password, BATCHML_*, AIRFLOW_CONN_*, AWS_*, MLFLOW_*)
    stack.urls / stack.ports       where each service listens (127.0.0.1)
    stack.airflow_api(token)       a small REST client of the Airflow API server (token from stack.airflow_token())
    stack.run_dag(dag_id, conf)    unpause, trigger and wait for a DAG run under the scheduler; returns its task instances
    stack.cli("status")            `bin/stack ...` on this state folder
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from stacktest import RunningStack, listening, missing_requirement, write_stack_specs


def pytest_configure(config):
    config.addinivalue_line("markers", "stack: starts the no-Docker stack (bin/stack: PostgreSQL, S3, MLflow, Spark, "
                                       "Airflow services)")


@pytest.fixture(scope="session")
def stack(request):
    reason = missing_requirement()
    if reason:
        pytest.skip(f"the stack cannot start here: {reason}")
    # under the system temp dir, traversable: PostgreSQL runs as the postgres user when the tests run as root
    root = Path(tempfile.mkdtemp(prefix="batchml-stack-"))
    root.chmod(0o755)
    running = RunningStack(root / "state")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    ports: dict[str, int] = {}
    try:
        running.up(env={"BATCHML_SPECS_DIR": str(write_stack_specs(root / "specs"))})
        ports = running.ports
        with capture.global_and_fixture_disabled():  # the figure shows in the test output
            print(f"\nbin/stack up: healthy in {running.up_seconds:.1f} s (state {running.root})")
        yield running
    finally:
        ports = running.ports or ports
        done = running.cli("down", "--purge", timeout=180)
        still = [port for port in ports.values() if listening(port)]
        subprocess.run(["rm", "-rf", str(root)], check=False)
        assert done.returncode == 0 and not still, (
            f"bin/stack down left ports {still} listening:\n{done.stdout}\n{done.stderr}"
        )
