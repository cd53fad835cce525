"""`Stack`: the whole stack of one state folder brought up (in dependency order, each service only when it is not
running, then waiting until every one passes its health check), checked, and brought down (Airflow first,
PostgreSQL last, then whatever is left in the services' sessions)."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import batchml.stack.airflow as airflow
import batchml.stack.environment as environment
import batchml.stack.mlflow as mlflow
import batchml.stack.postgres as postgres
import batchml.stack.preflight as preflight
import batchml.stack.processes as processes
import batchml.stack.s3 as s3
import batchml.stack.spark as spark
from batchml.stack.celery import health_redis, start_redis
from batchml.stack.output import display, elapsed, say
from batchml.stack.state import AIRFLOW_ADMIN, REPO, SERVICE_NAMES, StackError, StackState


class Stack(StackState):
    """The stack of one state folder: `Stack().up()`, `.health()`, `.down()`; `.env` is the client environment."""

    # Processes and environments, by service ----------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        return processes.pid(self, name)

    def started_at(self, name: str) -> float | None:
        return processes.started_at(self, name)

    def log_path(self, name: str):
        return processes.log_path(self, name)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return processes.log_tail(self, name, lines)

    def processes(self) -> list:
        return processes.stack_processes(self)

    def spark_connection(self) -> dict:
        return environment.spark_connection(self)

    def pipeline_env(self) -> dict[str, str]:
        return environment.pipeline_env(self)

    def airflow_env(self) -> dict[str, str]:
        return environment.airflow_env(self)

    def client_env(self) -> dict[str, str]:
        return environment.client_env(self)

    def write_env_file(self) -> None:
        environment.write_env_file(self)

    def check_requirements(self, celery: bool) -> None:
        preflight.check_requirements(self, celery)

    def s3_client(self, secret: str | None = None):
        return s3.client(self, secret)

    def spark_master_json(self) -> dict:
        return spark.master_json(self)

    # up -----------------------------------------------------------------------------------------------------------

    def up(self, celery: bool = False, timeout: float = 300.0) -> dict[str, tuple[bool, str]]:
        """Start what is not running, wait until every service is healthy; print the table and the time it took.
        On a running stack with the other executor, Airflow's components (and Redis, leaving Celery) stop first."""
        start = time.monotonic()
        deadline = start + timeout
        self.check_requirements(celery)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)  # the postgres user must traverse it; nobody else may list it
        for folder in (self.logs, self.pids, self.home):
            folder.mkdir(mode=0o700, exist_ok=True)
        with self.lock():
            running_before = processes.running(self)
            was = _executor(self.celery) if running_before and self.celery != celery else None
            self.prepare_state(celery, running_before)
            say(f"bin/stack up: {display(self.root)} ({_executor(celery)})")
            if was:
                # every Airflow component reads the executor: they restart, the services below keep running
                say(f"  switching from the {was}: restarting Airflow's components" + ("" if celery else
                                                                                     ", stopping Redis"))
                self._stop([n for n in SERVICE_NAMES if n.startswith("airflow-") or (n == "redis" and not celery)])
            started = self._start_all(start, deadline)
            self.write_env_file()
            health = self.wait_healthy(start, deadline, started)
        total = time.monotonic() - start
        self.print_table(health)
        ignored = ", git-ignored" if self.env_file.is_relative_to(REPO / ".local") else ""
        say(f"\ncredentials and client environment: {display(self.env_file)} (mode 600{ignored})")
        say(f"  source {display(self.env_file)}       # then: batchml check, airflow dags list, mlflow, boto3 ...")
        say(f"Airflow UI {self.urls['airflow-api-server']}: user {AIRFLOW_ADMIN}, password in "
            "$BATCHML_STACK_AIRFLOW_PASSWORD")
        if all(ok for ok, _ in health.values()):
            say(f"healthy in {total:.1f} s" + ("" if started else " (everything was already running)"))
        else:
            bad = [name for name, (ok, _) in health.items() if not ok]
            raise StackError(f"not healthy after {total:.0f} s: {', '.join(bad)}. See `bin/stack logs <service>`; "
                             "stop everything with `bin/stack down`")
        self.state["last_up_seconds"] = round(total, 1)
        self.save_state()
        return health

    def _start_all(self, t0: float, deadline: float) -> list[str]:
        """Start what is not running, each service as soon as what it needs is ready: moto, Redis and the Spark
        master first (the worker follows once the master listens, from a thread), while PostgreSQL starts and then
        `airflow db migrate` runs (the long pole); MLflow once PostgreSQL and S3 are ready, Airflow's components
        once the metadata DB is migrated. Returns the services it started."""
        started: list[str] = []

        def start(name: str, fn, *args) -> None:
            if self.pid(name):
                return
            fn(self, *args)
            started.append(name)

        def start_spark() -> None:
            start("spark-master", spark.start_master)
            processes.wait_port(self, "spark-master", self.ports["spark_master"], deadline)
            start("spark-worker", spark.start_worker)

        fresh_moto = not self.pid("moto-s3")
        start("moto-s3", s3.start)
        if self.celery:
            start("redis", start_redis)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stack-spark") as pool:
            spark_started = pool.submit(start_spark)
            if not self.pid("postgres"):
                started.append("postgres")
            postgres.start(self)
            say(f"  postgres ready, roles and databases provisioned ({elapsed(t0)})")
            airflow_down = [n for n in self.services() if n.startswith("airflow-") and not self.pid(n)]
            migration = airflow.start_migration(self) if airflow_down and not airflow.db_current(self) else None
            processes.wait_port(self, "moto-s3", self.ports["moto"], deadline)
            s3.bootstrap(self, fresh_moto)
            say(f"  S3 endpoint ready: IAM user, access key, policy, buckets; unsigned requests refused "
                f"({elapsed(t0)})")
            start("mlflow", mlflow.start)
            if migration:
                airflow.finish_migration(self, migration, deadline)
                say(f"  airflow db migrate done ({elapsed(t0)})")
            elif airflow_down:
                say("  Airflow metadata DB already migrated for this Airflow version")
            for name in self.services():
                if name.startswith("airflow-"):
                    start(name, airflow.start, name)
            spark_started.result()
        return started

    def wait_healthy(self, t0: float, deadline: float, started: list[str]) -> dict[str, tuple[bool, str]]:
        """Poll until every service passes its check at once: each round checks only the services that have not
        passed yet (and any whose process went away), so a slow check (MLflow hashes a password) runs once."""
        announced: set[str] = set()
        mlflow_user = False
        health: dict[str, tuple[bool, str]] = {}
        while True:
            if not mlflow_user and _http_ok(f"{self.urls['mlflow']}/health"):
                mlflow.ensure_user(self)
                mlflow_user = True
            pending = [n for n in self.services() if not health.get(n, (False,))[0] or not self.pid(n)]
            health.update(self.health(pending))
            for name, (ok, _) in health.items():
                if ok and name not in announced and name in started:
                    announced.add(name)
                    say(f"  healthy: {name} ({elapsed(t0)})")
            if all(ok for ok, _ in health.values()):
                return health
            dead = [n for n in started if not self.pid(n)]
            if dead:
                tails = "\n".join(f"--- {n}:\n{self.log_tail(n)}" for n in dead)
                raise StackError(f"{', '.join(dead)} exited during start-up:\n{tails}\n"
                                 "Fix the cause, then `bin/stack up` again (or `bin/stack down`)")
            if time.monotonic() > deadline:
                return health
            time.sleep(0.25)

    # Health -------------------------------------------------------------------------------------------------------

    def health(self, names: list[str] | None = None) -> dict[str, tuple[bool, str]]:
        """Every service (or those named) -> (healthy, what was checked or what is wrong). Each check is a real
        client call."""
        checks = {
            "postgres": postgres.health,
            "redis": health_redis,
            "moto-s3": s3.health,
            "spark-master": spark.health_master,
            "spark-worker": spark.health_worker,
            "mlflow": mlflow.health,
        }
        answer = None
        out = {}
        for name in self.services() if names is None else names:
            if not self.pid(name):
                out[name] = (False, "not running")
                continue
            try:
                if name.startswith("airflow-"):
                    answer = answer if answer is not None else airflow.health_json(self)
                    out[name] = airflow.health(self, name, answer)
                else:
                    out[name] = checks[name](self)
            except Exception as exc:  # a health check reports, it does not raise
                out[name] = (False, f"{type(exc).__name__}: {exc}"[:200])
        return out

    # down ---------------------------------------------------------------------------------------------------------

    def down(self, purge: bool = False, timeout: float = 30.0) -> list[int]:
        """Stop every service this stack started (process groups, then stragglers); return ports still listening."""
        if not self.root.exists():
            return []
        with self.lock():
            everything = self.processes()  # before anything stops: sessions are known by their leaders
            pg_pid = self.pid("postgres")
            # PostgreSQL's own processes (each backend starts a session of its own) stop with pg_ctl, nothing else
            pg_processes = {pg_pid, *processes.descendants(pg_pid)} if pg_pid else set()
            # Airflow first (its tasks still reach the services below while they stop), then the rest, PostgreSQL last
            phases = [[n for n in SERVICE_NAMES if n.startswith("airflow-")],
                      [n for n in SERVICE_NAMES if not n.startswith("airflow-") and n != "postgres"]]
            for names in phases:
                self._stop(names, timeout)
            # stragglers, e.g. an interrupted `airflow db migrate` or an orphaned executor (not PostgreSQL's own)
            left = [p for p in everything if not processes.exited(p) and p.pid not in pg_processes]
            if left:
                processes.terminate(left, timeout)
                say(f"  stopped {len(left)} more process(es) of this stack")
            if pg_pid:
                began = time.monotonic()
                # with --purge its data goes anyway: no shutdown checkpoint (pg_ctl -m immediate)
                postgres.server(self).stop(remove=purge and self.state_file.exists())
                if processes.alive(pg_pid):
                    processes.stop_groups([pg_pid], timeout)
                say(f"  stopped postgres ({pg_pid}) in {elapsed(began)}")
            left = [p for p in everything if not processes.exited(p)]
            if left:
                processes.terminate(left, timeout)
            busy = processes.ports_still_listening(self)
            if purge:
                self._purge()
        return busy

    def _stop(self, names: list[str], timeout: float = 30.0) -> None:
        """Stop these services together (`processes.stop_groups`: main processes, then what is left of their
        groups) and forget their PIDs."""
        pids = {name: pid for name in names if (pid := self.pid(name))}
        if pids:
            began = time.monotonic()
            processes.stop_groups(list(pids.values()), timeout)
            say(f"  stopped {', '.join(f'{n} ({p})' for n, p in pids.items())} in {elapsed(began)}")
        for name in names:
            processes.pid_file(self, name).unlink(missing_ok=True)

    def _purge(self) -> None:
        if self.state_file.exists() or not any(self.root.iterdir()):
            shutil.rmtree(self.root)
            self.state = {}
        else:
            raise StackError(f"{self.root} has no state.json: not a stack folder, not deleting it")

    # Output -------------------------------------------------------------------------------------------------------

    def print_table(self, health: dict[str, tuple[bool, str]]) -> None:
        rows = [("service", "pid", "url", "health")]
        for name in self.services():
            ok, detail = health.get(name, (False, "unknown"))
            rows.append((name, str(self.pid(name) or "-"), self.service_url(name),
                         f"{'ok' if ok else 'NOT OK'}: {detail}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for row in rows:
            say("  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)))


def _executor(celery: bool) -> str:
    return "CeleryExecutor" if celery else "LocalExecutor"


def _http_ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
