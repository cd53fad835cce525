"""The stack's MLflow tracking server: PostgreSQL backend store, artifacts proxied to S3, the basic-auth app with an
admin and the pipeline's own account, and its health (that account gets in, anonymous calls do not)."""

from __future__ import annotations

from batchml.stack.processes import base_env, spawn
from batchml.stack.state import (
    ARTIFACT_BUCKET,
    AWS_REGION,
    BIN,
    HOST,
    MLFLOW_ADMIN,
    MLFLOW_USER,
    StackError,
    StackState,
    write_private,
)


def start(stack: StackState) -> None:
    """Needs PostgreSQL provisioned and S3 bootstrapped (the access key in the state)."""
    folder = stack.root / "mlflow"
    folder.mkdir(mode=0o700, exist_ok=True)
    auth = folder / "basic_auth.ini"
    write_private(auth, "\n".join([
        "[mlflow]",
        "default_permission = READ",
        # users and permissions live in the mlflow database too (their own tables and alembic version table)
        f"database_uri = {stack.pg_url('mlflow', 'postgresql')}",
        f"admin_username = {MLFLOW_ADMIN}",
        f"admin_password = {stack.secret['mlflow_admin']}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        # every request's password check is a deliberately slow hash (0.1-0.9 s of CPU here), and registering a
        # model makes about a hundred requests: keep a successful check for a minute (MLflow's own option, off by
        # default; per worker process, and a wrong password is never cached)
        "auth_cache_ttl_seconds = 60",
    ]) + "\n")
    aws = stack.state["aws"]
    env = {
        **base_env(),
        "MLFLOW_BACKEND_STORE_URI": stack.pg_url("mlflow", "postgresql"),  # in the environment, not in argv
        "MLFLOW_AUTH_CONFIG_PATH": str(auth),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": stack.secret["mlflow_flask"],
        "AWS_ACCESS_KEY_ID": aws["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": aws["secret_access_key"],
        "AWS_DEFAULT_REGION": AWS_REGION,
        "MLFLOW_S3_ENDPOINT_URL": stack.urls["moto-s3"],
        # MLflow 3's job runner (GenAI online scoring, trace archival: 8 more processes) is not used by batchml
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    spawn(stack, "mlflow", [
        str(BIN / "mlflow"), "server", "--host", HOST, "--port", str(stack.ports["mlflow"]), "--workers", "1",
        "--serve-artifacts", "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}/artifacts",
        "--app-name", "basic-auth",
    ], env, cwd=folder)


def ensure_user(stack: StackState) -> None:
    """The pipeline's own MLflow account (created by the admin; READ on everything, MANAGE on what it creates)."""
    import requests

    base, admin = stack.urls["mlflow"], (MLFLOW_ADMIN, stack.secret["mlflow_admin"])
    body = {"username": MLFLOW_USER, "password": stack.secret["mlflow_user"]}
    found = requests.get(f"{base}/api/2.0/mlflow/users/get", params={"username": MLFLOW_USER}, auth=admin,
                         timeout=10)
    if found.status_code == 200:
        done = requests.patch(f"{base}/api/2.0/mlflow/users/update-password", json=body, auth=admin, timeout=10)
    else:
        done = requests.post(f"{base}/api/2.0/mlflow/users/create", json=body, auth=admin, timeout=10)
    if done.status_code != 200:
        raise StackError(f"MLflow refused to set up user {MLFLOW_USER!r}: {done.status_code} {done.text[:300]}")


def health(stack: StackState) -> tuple[bool, str]:
    import requests

    base = stack.urls["mlflow"]
    if requests.get(f"{base}/health", timeout=3).status_code != 200:
        return False, "/health does not answer 200"
    search = f"{base}/api/2.0/mlflow/experiments/search"
    anonymous = requests.get(search, params={"max_results": 1}, timeout=5).status_code
    if anonymous not in (401, 403):
        return False, f"answers {anonymous} without credentials"
    user = requests.get(search, params={"max_results": 1}, timeout=5,
                        auth=(MLFLOW_USER, stack.secret["mlflow_user"])).status_code
    if user != 200:
        return False, f"user {MLFLOW_USER} gets {user}"
    return True, f"user {MLFLOW_USER} authenticated; anonymous refused ({anonymous})"
