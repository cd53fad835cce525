"""A Spark driver that outlives tasks: a Spark Connect server with batchml's session defaults (`batchml spark-server`).

In local or cluster mode every Airflow task starts a driver JVM of its own, and its first job pays that JVM's
start, class loading, JIT compilation and Spark's code generation: 15 s for a feature job that takes 6-7 s warm
(200k customers, docs/benchmarks.md). Tasks whose Spark connection is `sc://host:port` are clients of this server
instead: a session each (confs and temporary views stay per task), one JVM whose compiled code every later task
reuses.

Spark's own `start-connect-server.sh` gives each client session a class loader of its own, and Spark's cache of
generated classes is keyed by class loader: every task compiled its 30 classes again and ran them cold (about 8 s
per run instead of 6.3 s). This server keeps the shared class loader, since batchml's clients add no artifacts
(no UDFs, no jars): a server shared with clients that do should be started with Spark's own script.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_PORT = 15002
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
"""The bearer token clients must send; PySpark's Connect client reads the same variable."""

SERVER_CONFS = {
    # one class loader for every session, so generated classes compiled for one task serve the next
    "spark.sql.artifact.isolation.enabled": "false",
    "spark.sql.artifact.isolation.alwaysApplyClassloader": "false",
}


def server_confs(master: str, host: str, port: int, conf: dict[str, str] | None, token: str | None) -> dict[str, str]:
    """The confs `serve` starts the driver with: batchml's defaults (applied by start_spark), the server's, `conf`."""
    confs = {**SERVER_CONFS, "spark.connect.grpc.binding.address": host, "spark.connect.grpc.binding.port": str(port),
             **(conf or {})}
    if token:
        confs["spark.connect.authenticate.token"] = token
    return confs


def serve(master: str = "local[*]", host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          conf: dict[str, str] | None = None, token: str | None = None,
          stop: threading.Event | None = None, say: Callable[[str], None] = log.warning) -> None:
    """Run a Spark Connect server until SIGTERM/SIGINT (or `stop` is set), then stop it and its driver.

    Says (the CLI: on stdout) one line once clients can connect, `ready: sc://...`, which scripts and tests wait
    for."""
    from batchml.features import start_spark

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    started = time.perf_counter()
    spark = start_spark(master, server_confs(master, host, port, conf, token), "batchml-spark-connect")
    spark.sparkContext.setLogLevel("WARN")
    service = spark._jvm.org.apache.spark.sql.connect.service.SparkConnectService
    try:
        service.start(spark._jsc.sc())
        url = f"sc://{'localhost' if host in ('127.0.0.1', 'localhost') else host}:{port}"
        say(f"Spark Connect server on {master} started in {time.perf_counter() - started:.1f} s "
              f"({'token required' if token else 'no token'}).\nready: {url}\n"
              f"Point the Spark connection at it, e.g. AIRFLOW_CONN_BATCHML_SPARK='{{\"conn_type\": \"spark_connect\", "
              f"\"host\": \"{url.removeprefix('sc://').rsplit(':', 1)[0]}\", \"port\": {port}}}'; stop with Ctrl-C "
              "or SIGTERM.")
        stop.wait()
    finally:
        say("stopping the Spark Connect server ...")
        try:
            service.stop(getattr(service, "stop$default$1")(), getattr(service, "stop$default$2")())
        except Exception as exc:  # the driver stops below whatever happened to the service
            log.warning("Spark Connect service did not stop cleanly: %s", exc)
        spark.stop()
        say("Spark Connect server stopped.")
