"""What each process and client of the stack gets in its environment: batchml's settings and connections (the
pipeline's), Airflow's configuration, and stack.env, which holds both plus the people's credentials."""

from __future__ import annotations

import json
from urllib.parse import quote

from batchml.stack.state import (
    AIRFLOW_ADMIN,
    ANALYST_ROLE,
    ARTIFACT_BUCKET,
    AWS_REGION,
    EXECUTOR_MEMORY,
    HOST,
    LANDING_BUCKET,
    MLFLOW_ADMIN,
    MLFLOW_USER,
    PARALLELISM,
    PYTHON,
    REPO,
    SPARK_CONN_ID,
    STACK_DIR_ENV,
    WRITER_ROLE,
    StackState,
    write_private,
)


def spark_connection(stack: StackState) -> dict:
    """The Airflow connection `batchml_spark` (JSON form): the master and the confs every driver needs."""
    return {
        "conn_type": "spark",
        "host": stack.urls["spark-master"],
        "extra": {
            "spark.authenticate": "true",
            "spark.authenticate.secret": stack.secret["spark"],
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.driver.memory": "1g",
            "spark.executor.memory": EXECUTOR_MEMORY,
            "spark.pyspark.python": str(PYTHON),
            "spark.sql.shuffle.partitions": "4",
            "spark.ui.showConsoleProgress": "false",
        },
    }


def pipeline_env(stack: StackState) -> dict[str, str]:
    """What batchml's code reads in the Airflow tasks: settings, connections, S3 and MLflow credentials."""
    aws = stack.state.get("aws", {})
    mlflow_url = stack.urls["mlflow"]
    return {
        "BATCHML_HOME": str(stack.home),
        "BATCHML_DATA_ROOT": str(stack.home / "data"),
        "BATCHML_SPECS_DIR": stack.state.get("specs_dir") or str(REPO / "specs"),
        "BATCHML_LANDING_URL": f"s3://{LANDING_BUCKET}/landing",
        "BATCHML_WAREHOUSE_URL": stack.pg_url(WRITER_ROLE),
        "BATCHML_WAREHOUSE_READER_ROLE": ANALYST_ROLE,
        "BATCHML_MLFLOW_TRACKING_URI": mlflow_url,
        # batchml's experiments: the tasks write artifacts to S3 themselves (as in docker-compose.yaml). MLflow 3
        # refuses an experiment location `mlflow-artifacts://host:port/...`, and batchml.registry takes a location
        # without "://" (`mlflow-artifacts:/batchml`, the proxied form) for a local path.
        "BATCHML_MLFLOW_ARTIFACT_ROOT": f"s3://{ARTIFACT_BUCKET}/batchml",
        "BATCHML_SPARK_CONN_ID": SPARK_CONN_ID,
        f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps(spark_connection(stack)),
        "AWS_ACCESS_KEY_ID": aws.get("access_key_id", ""),
        "AWS_SECRET_ACCESS_KEY": aws.get("secret_access_key", ""),
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_ENDPOINT_URL": stack.urls["moto-s3"],
        "MLFLOW_S3_ENDPOINT_URL": stack.urls["moto-s3"],
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": stack.secret["mlflow_user"],
        "SPARK_LOCAL_IP": HOST,
        "PYSPARK_PYTHON": str(PYTHON),
        "GX_ANALYTICS_ENABLED": "false",
    }


def airflow_env(stack: StackState) -> dict[str, str]:
    """Airflow's configuration, the same for every component (and for a client's `airflow` command)."""
    api = stack.urls["airflow-api-server"]
    env = {
        "AIRFLOW_HOME": str(stack.airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if stack.celery else "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": stack.pg_url("airflow"),
        "AIRFLOW__CORE__FERNET_KEY": stack.secret["airflow_fernet"],
        "AIRFLOW__API__SECRET_KEY": stack.secret["airflow_api_secret"],
        "AIRFLOW__API_AUTH__JWT_SECRET": stack.secret["airflow_jwt"],
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(stack.ports["airflow_api"]),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        # tasks report to the execution API of this API server (not the default localhost:8080)
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(stack.airflow_home / "passwords.json"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(PARALLELISM),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    }
    if stack.celery:
        env.update({
            "AIRFLOW__CELERY__BROKER_URL": stack.redis_url(),
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + stack.pg_url("airflow", "postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(PARALLELISM),
        })
    return env


def client_env(stack: StackState) -> dict[str, str]:
    """Everything stack.env holds: the pipeline's and Airflow's environment, plus the people's credentials."""
    superuser = quote(stack.secret["pg_superuser"], safe="")
    return {
        STACK_DIR_ENV: str(stack.root),
        **pipeline_env(stack),
        **airflow_env(stack),
        "BATCHML_STACK_AIRFLOW_URL": stack.urls["airflow-api-server"],
        "BATCHML_STACK_AIRFLOW_USERNAME": AIRFLOW_ADMIN,
        "BATCHML_STACK_AIRFLOW_PASSWORD": stack.secret["airflow_admin"],
        "BATCHML_STACK_MLFLOW_ADMIN_USERNAME": MLFLOW_ADMIN,
        "BATCHML_STACK_MLFLOW_ADMIN_PASSWORD": stack.secret["mlflow_admin"],
        "BATCHML_STACK_ANALYST_DSN": stack.pg_url(ANALYST_ROLE, "postgresql"),
        "BATCHML_STACK_POSTGRES_SUPERUSER_DSN":
            f"postgresql://postgres:{superuser}@{HOST}:{stack.ports['postgres']}/postgres",
        "BATCHML_STACK_AIRFLOW_DB_URL": stack.pg_url("airflow", "postgresql"),
        "BATCHML_STACK_MLFLOW_DB_URL": stack.pg_url("mlflow", "postgresql"),
        "BATCHML_STACK_SPARK_MASTER_UI": stack.urls["spark-master-ui"],
        "BATCHML_STACK_SPARK_SECRET": stack.secret["spark"],
        **({"BATCHML_STACK_REDIS_URL": stack.redis_url()} if stack.celery else {}),
    }


def write_env_file(stack: StackState) -> None:
    """stack.env: `export KEY='value'` lines, mode 600 (`batchml.stack.state.read_env_file` reads it back)."""
    lines = [
        "# batchml stack: credentials and client environment, generated by `bin/stack up`. Private (mode 600):",
        "# never commit or share it. Use it from a shell:  source " + str(stack.env_file),
        "# Every password here was generated for this stack; `bin/stack down --purge` forgets them.",
    ]
    lines += [f"export {key}={shell_quote(value)}" for key, value in client_env(stack).items()]
    write_private(stack.env_file, "\n".join(lines) + "\n")


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"

