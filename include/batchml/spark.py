"""The Spark sessions of batchml's jobs, and a driver that outlives tasks.

A session is local (`local[*]`), on a cluster (`spark://...`, `yarn`, ...), or a client session on a Spark Connect
server (`sc://host:port`): whatever the Spark connection names (`pipelines.common.spark_connection`). Each gets
batchml's session defaults (DEFAULT_CONFS, overridable by the connection, and sparkconf.RUNTIME_CONFS).

`batchml spark-server` (`serve`) runs the Spark Connect server. In local or cluster mode every Airflow task starts
a driver JVM of its own, and its first job pays that JVM's start, class loading, JIT compilation and Spark's code
generation: 14 s for a feature job that takes 6.5 s warm (200k customers, docs/benchmarks.md). Tasks whose
connection points at the server open a session each on its one JVM (confs and temporary views stay per task) and
reuse its compiled code. Spark's own `start-connect-server.sh` gives each client session a class loader of its own,
and Spark's cache of generated classes is keyed by class loader: every task compiled its 30 classes again and ran
them cold (about 8 s per run instead of 6.4 s). This server keeps the shared class loader, since batchml's clients
add no artifacts (no UDFs, no jars): a server shared with clients that do should be started with Spark's script.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from batchml.sparkconf import JAVA_OPTIONS, RUNTIME_CONFS, class_archive_options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Session confs batchml sets unless the Spark connection (or the caller) sets them; RUNTIME_CONFS always apply.
DEFAULT_CONFS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    "spark.sql.adaptive.enabled": "true",
    # Spark packs small files into a scan task up to maxPartitionBytes, counting each file as at least openCostInBytes
    # (4 MB by default). A landed day is many small files (transactions at 1M customers: 20 of 370 KB), so each task
    # read about 1.5 days: its partial aggregation met most entities once and passed 22.7M of the 38M events read on
    # to the shuffle. Counted near their size, the files of a window fill one task per core, and 2.4M rows are
    # shuffled (at 1M customers the warm job 41.6 -> 32.6 s; docs/benchmarks.md). A cluster still gets a task per core.
    "spark.sql.files.openCostInBytes": "262144",
    "spark.sql.files.maxPartitionBytes": "1g",
    # The first-level ("fast") hash map of an aggregation holds 65,536 groups; grouped by entity (a million), nearly
    # every row probed it in vain before the main map (about 10% of the scan's CPU time).
    "spark.sql.codegen.aggregate.map.twolevel.enabled": "false",
    # Reads select day folders and Spark filters every row after the scan anyway; pushing the time filters down to
    # Parquet row groups skipped nothing here but cost a filter conversion per file: with a partition's 20 files a
    # day and the population read from every landed day, 3 CPU s in each run at 1M customers, 4 s in the first.
    "spark.sql.parquet.filterPushdown": "false",
    # the throughput collector: 10-15% less CPU than the default G1 on the feature job (docs/benchmarks.md)
    "spark.driver.extraJavaOptions": "-XX:+UseParallelGC",
}


def is_connect_url(master: str) -> bool:
    """Whether `master` is a Spark Connect server (`sc://host:port`, e.g. `batchml spark-server`)."""
    return master.startswith("sc://")


CONNECT_ADVICE = ("Start one with `batchml spark-server` (docs/deploy.md), or point the Spark connection "
                  "(BATCHML_SPARK_CONN_ID) at a running server")


def reach_connect_server(url: str, timeout: float = 10) -> str:
    """The server part of a Spark Connect URL (its parameters, which may hold a token, left out), once a TCP
    connection to it succeeded; otherwise a ConfigurationError saying what to do. PySpark's client retries an
    unreachable server for minutes, so a closed port is told at once."""
    import socket
    from urllib.parse import urlsplit

    from batchml.errors import ConfigurationError

    where = url.split("/;", 1)[0]
    address = urlsplit(where)
    try:
        socket.create_connection((address.hostname, address.port or DEFAULT_PORT), timeout=timeout).close()
    except OSError as exc:
        raise ConfigurationError(f"cannot reach the Spark Connect server {where} ({exc}). {CONNECT_ADVICE}.") from None
    return where


def _connect_session(url: str, conf: dict[str, str]):
    """A new session on a Spark Connect server. Only SQL confs are a session's own; the server's driver has the rest.
    An unreachable server or a refused token is a ConfigurationError saying what to do."""
    from pyspark.sql import SparkSession

    from batchml.errors import ConfigurationError

    confs = {k: str(v) for k, v in {**DEFAULT_CONFS, **RUNTIME_CONFS, **conf}.items() if k.startswith("spark.sql.")}
    where = reach_connect_server(url)
    session = SparkSession.builder.remote(url).create()  # no call to the server yet
    try:
        for key, value in confs.items():  # the first calls to the server
            session.conf.set(key, value)
        return session
    except Exception as exc:  # grpc's and Spark Connect's errors, whatever their classes
        # stopped now: a client left open calls the server again when the process exits, and retries for minutes if
        # the server has gone by then (the process does not exit meanwhile)
        session.stop()
        text = " ".join(str(exc).split())
        detail = m.group(1) if (m := re.search(r'details = "([^"]*)"', text)) else text[:300]
        raise ConfigurationError(
            f"cannot open a session on the Spark Connect server {where}: {detail}. {CONNECT_ADVICE}; a server started "
            "with a token needs the same token in the connection (extra `token`).") from None


def start_spark(master: str = "local[*]", conf: dict[str, str] | None = None, app_name: str = "batchml"):
    """A Spark session on `master` with batchml's defaults and `conf` over them (driver options, such as its memory,
    only take effect when this starts the JVM: one session per process). On a Spark Connect server (`sc://`), a new
    client session of its own."""
    from pyspark.sql import SparkSession

    if is_connect_url(master):
        return _connect_session(master, conf or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    confs = {**DEFAULT_CONFS, **RUNTIME_CONFS, **(conf or {})}
    archive = class_archive_options()
    if archive:
        confs[JAVA_OPTIONS] = f"{confs.get(JAVA_OPTIONS, '')} {archive}".strip()
    for key, value in confs.items():
        builder = builder.config(key, str(value))
    return builder.getOrCreate()


def local_spark_session(master: str = "local[*]", app_name: str = "batchml", conf: dict[str, str] | None = None):
    """A Spark session for the CLI, tests and benchmarks (Airflow tasks: `spark_session` with the connection's)."""
    return start_spark(master, conf, app_name)


@contextmanager
def spark_session(master: str, conf: dict[str, str], app_name: str) -> Iterator[SparkSession]:
    """A Spark session for one task, stopped at the end if this started it (each Airflow task runs in a process of
    its own). A session already running in the process (a test's, a notebook's) is used and left running. On a Spark
    Connect server the task's session is released at the end; the server keeps running."""
    from pyspark import SparkContext

    if is_connect_url(master):
        # PySpark marks the whole process as a Connect client (`pyspark.sql.functions` then build Connect columns);
        # unmarked again at the end, so that a process that also uses a local session (a test run) still can
        marked = "SPARK_CONNECT_MODE_ENABLED" in os.environ
        try:
            session = start_spark(master, conf, app_name)
            try:
                yield session
            finally:
                session.stop()
        finally:
            if not marked:
                os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        return
    already_running = SparkContext._active_spark_context is not None
    session = start_spark(master, conf, app_name)
    try:
        session.sparkContext.setLogLevel("WARN")
        yield session
    finally:
        if not already_running:
            session.stop()


# The Spark Connect server (`batchml spark-server`) --------------------------------------------------------------------


DEFAULT_PORT = 15002
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
"""The bearer token clients must send; PySpark's Connect client reads the same variable."""

SERVER_CONFS = {
    # one class loader for every session, so generated classes compiled for one task serve the next
    "spark.sql.artifact.isolation.enabled": "false",
    "spark.sql.artifact.isolation.alwaysApplyClassloader": "false",
}


def server_confs(host: str, port: int, conf: dict[str, str] | None, token: str | None) -> dict[str, str]:
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
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    started = time.perf_counter()
    spark = start_spark(master, server_confs(host, port, conf, token), "batchml-spark-connect")
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
