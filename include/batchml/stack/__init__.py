"""A production-like batchml stack on one host, started from the installed packages, without Docker.

    bin/stack up [--celery]       start every service (or the ones not running), wait until each one is healthy;
                                  on a running stack with the other executor, switch: Airflow's components restart
    bin/stack status              one line per service: PID, URL, health
    bin/stack logs [SERVICE]      the end of a service's log (-f follows)
    bin/stack env                 where the generated credentials / client environment file is and how to source it
    bin/stack down [--purge]      stop everything the stack started; --purge also deletes its state

Every service listens on 127.0.0.1 only, on ports picked at the first `up` and kept in the state folder:

    postgres              PostgreSQL (batchml.localpg): databases airflow, warehouse and mlflow, one owner role each,
                          plus the read-only analyst role; scram-sha-256 passwords for TCP
    redis                 (--celery) Celery broker, password required
    moto-s3               moto's S3 (and IAM) server with request signing enforced: landing and MLflow buckets
    spark-master          Spark standalone master from pyspark's own files, shared-secret authentication
    spark-worker          one worker: 2 cores, 2 GB for executors
    mlflow                MLflow tracking server: PostgreSQL backend store, artifacts proxied to S3, basic-auth app
    airflow-api-server    UI, REST API and the execution API tasks report to (SimpleAuthManager)
    airflow-scheduler     LocalExecutor (tasks run as its subprocesses), or CeleryExecutor with --celery
    airflow-dag-processor parses dags/
    airflow-triggerer     deferred tasks
    airflow-celery-worker (--celery) runs the tasks

State (BATCHML_STACK_DIR, default .local/stack): state.json (ports and generated secrets, mode 600), stack.env (every
password and the environment a client needs, mode 600), logs/, pids/, and one data folder per service.

The modules, lowest first (each imports only those above it):

    output        the command's own output lines
    state         the state folder, state.json (ports, generated secrets), stack.env, the lock, fixed names
    processes     start a service in its own session, PIDs, waiting for a port, stopping process groups
    environment   what the Airflow processes and clients get (batchml settings, Airflow config, stack.env)
    postgres, s3, spark, mlflow, celery, airflow     one service family each: start, set up, health
    preflight     what must be installed before `up`
    lifecycle     `Stack`: up (dependency order, waiting for health), health, down
    cli           the `bin/stack` command; `python -m batchml.stack` runs it (__main__)
"""

from batchml.stack.cli import main
from batchml.stack.lifecycle import Stack
from batchml.stack.s3 import serve_moto
from batchml.stack.spark import spark_home
from batchml.stack.state import (
    AIRFLOW_ADMIN,
    ANALYST_ROLE,
    ARTIFACT_BUCKET,
    AWS_REGION,
    DEFAULT_DIR,
    HOST,
    LANDING_BUCKET,
    MLFLOW_ADMIN,
    MLFLOW_USER,
    PG_ROLES,
    PORTS,
    SECRET_NAMES,
    SERVICE_NAMES,
    SERVICES,
    SPARK_CONN_ID,
    STACK_DIR_ENV,
    WRITER_ROLE,
    Service,
    StackError,
    StackState,
    read_env_file,
)

__all__ = [
    "AIRFLOW_ADMIN", "ANALYST_ROLE", "ARTIFACT_BUCKET", "AWS_REGION", "DEFAULT_DIR", "HOST", "LANDING_BUCKET",
    "MLFLOW_ADMIN", "MLFLOW_USER", "PG_ROLES", "PORTS", "SECRET_NAMES", "SERVICES", "SERVICE_NAMES", "SPARK_CONN_ID",
    "STACK_DIR_ENV", "WRITER_ROLE", "Service", "Stack", "StackError", "StackState", "main", "read_env_file",
    "serve_moto", "spark_home",
]
