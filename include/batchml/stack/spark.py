"""The stack's Spark standalone cluster, from the installed pyspark's own launch scripts and jars: a master and one
worker with shared-secret authentication, and their health from the master's JSON."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from batchml.stack.processes import base_env, spawn
from batchml.stack.state import HOST, PYTHON, WORKER_CORES, WORKER_MEMORY, StackError, StackState, write_private

JIT_LIGHT = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def spark_home() -> Path:
    """The installed pyspark folder: Spark's own launch scripts (bin/spark-class) and jars."""
    spec = find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise StackError("pyspark is not installed: run ./bin/bootstrap")
    return Path(spec.origin).parent


def _env(stack: StackState) -> dict[str, str]:
    folder = stack.root / "spark"
    return {**base_env(), "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": HOST,
            "SPARK_CONF_DIR": str(folder / "conf"), "SPARK_DAEMON_MEMORY": "512m",
            "SPARK_LOG_DIR": str(stack.logs), "SPARK_LOCAL_DIRS": str(folder / "local"),
            "PYSPARK_PYTHON": str(PYTHON),
            # the daemons (and spark-class's launcher JVM) do little work: the client compiler alone and the serial
            # collector halve their start-up CPU (4 s instead of 7-9 s each on 2 busy cores). Executors and
            # drivers are not affected.
            "SPARK_DAEMON_JAVA_OPTS": JIT_LIGHT, "SPARK_LAUNCHER_OPTS": JIT_LIGHT}


def _properties(stack: StackState) -> Path:
    folder = stack.root / "spark"
    (folder / "conf").mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / "daemon.properties"
    write_private(path, "\n".join([
        "spark.authenticate true",
        f"spark.authenticate.secret {stack.secret['spark']}",
        "spark.master.rest.enabled false",
        "spark.worker.cleanup.enabled true",
        "spark.worker.cleanup.appDataTtl 86400",
        "spark.ui.killEnabled false",
    ]) + "\n")
    return path


def start_master(stack: StackState) -> None:
    props = _properties(stack)
    spawn(stack, "spark-master", [
        str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
        "--host", HOST, "--port", str(stack.ports["spark_master"]),
        "--webui-port", str(stack.ports["spark_master_ui"]), "--properties-file", str(props),
    ], _env(stack))


def start_worker(stack: StackState) -> None:
    props = _properties(stack)
    work = stack.root / "spark" / "work"
    work.mkdir(parents=True, exist_ok=True)
    spawn(stack, "spark-worker", [
        str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
        stack.urls["spark-master"], "--host", HOST, "--port", str(stack.ports["spark_worker"]),
        "--webui-port", str(stack.ports["spark_worker_ui"]), "--cores", str(WORKER_CORES),
        "--memory", WORKER_MEMORY, "--work-dir", str(work), "--properties-file", str(props),
    ], _env(stack))


def master_json(stack: StackState) -> dict:
    """The master's /json/ page: its status, workers and applications."""
    import requests

    return requests.get(f"{stack.urls['spark-master-ui']}/json/", timeout=3).json()


def health_master(stack: StackState) -> tuple[bool, str]:
    status = master_json(stack).get("status")
    return status == "ALIVE", f"status {status}"


def health_worker(stack: StackState) -> tuple[bool, str]:
    workers = [w for w in master_json(stack).get("workers", [])
               if w.get("port") == stack.ports["spark_worker"] and w.get("state") == "ALIVE"]
    if not workers:
        return False, "not registered with the master"
    w = workers[0]
    return True, f"ALIVE at the master: {w.get('cores')} cores, {w.get('memory')} MB"
