"""Before `up` starts anything: is everything the stack needs here? Each failure says what to install or change."""

from __future__ import annotations

import os
import shutil

from batchml.stack.spark import spark_home
from batchml.stack.state import BIN, STACK_DIR_ENV, StackError, StackState


def check_requirements(stack: StackState, celery: bool) -> None:
    """Fail early, saying what to install, when something the stack needs is missing."""
    from batchml.localpg import find_bin_dir

    try:
        find_bin_dir()
    except RuntimeError as exc:
        raise StackError(str(exc)) from None
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise StackError("java not found: Spark needs Java 17 or 21 (apt-get install -y openjdk-17-jre-headless)")
    if not (spark_home() / "jars").is_dir():
        raise StackError(f"{spark_home()} has no jars/ (pyspark-client replaced the full pyspark): run ./bin/bootstrap")
    for tool in ("airflow", "mlflow"):
        if not (BIN / tool).exists():
            raise StackError(f"{BIN / tool} not found: run ./bin/bootstrap to install requirements.txt")
    if celery:
        if not shutil.which("redis-server"):
            raise StackError("redis-server not found (the Celery broker): apt-get install -y redis-server")
        if not (installed("apache-airflow-providers-celery") and installed("redis")):
            raise StackError("the Celery provider is not installed: run ./bin/bootstrap "
                             "(requirements.txt pins apache-airflow-providers-celery, celery and redis)")
    if os.geteuid() == 0:
        # PostgreSQL runs as the postgres user, which must be able to enter every folder above its own
        import pwd

        pg_uid = pwd.getpwnam("postgres").pw_uid
        for folder in [stack.root, *stack.root.parents]:
            if folder.exists():
                st = folder.stat()
                if st.st_uid != pg_uid and not st.st_mode & 0o001:
                    raise StackError(
                        f"PostgreSQL runs as the postgres user, which cannot enter {folder}: chmod o+x {folder}, "
                        f"or set {STACK_DIR_ENV} to a folder it can reach"
                    )


def installed(distribution: str) -> bool:
    """Without importing it (importing airflow.* would reconfigure this process's logging)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True
