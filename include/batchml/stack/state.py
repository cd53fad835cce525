"""The stack's state folder: its layout, state.json (ports picked at the first `up`, generated secrets), the parsed
stack.env, the lock every command takes, and the fixed choices (names, preferred ports, roles) the services share."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from batchml.stack.output import say

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DIR = REPO / ".local" / "stack"
STACK_DIR_ENV = "BATCHML_STACK_DIR"
HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the virtualenv's bin/ (not resolved: .venv/bin/python is a symlink)
PYTHON = BIN / Path(sys.executable).name

LANDING_BUCKET = "batchml-landing"
ARTIFACT_BUCKET = "batchml-mlflow"
AWS_REGION = "us-east-1"
S3_USER = "batchml"
AIRFLOW_ADMIN = "admin"
MLFLOW_ADMIN = "admin"
MLFLOW_USER = "batchml"  # the pipeline's MLflow account (not an admin)
SPARK_CONN_ID = "batchml_spark"
WORKER_CORES = 2
WORKER_MEMORY = "2g"
EXECUTOR_MEMORY = "1g"
PARALLELISM = 2  # task slots: LocalExecutor processes, or Celery worker concurrency (2 cores)

# role -> (database, secret name); the analyst connects to the warehouse and owns nothing
PG_ROLES = {
    "airflow": ("airflow", "pg_airflow"),
    "batchml_writer": ("warehouse", "pg_writer"),
    "batchml_analyst": ("warehouse", "pg_analyst"),
    "mlflow": ("mlflow", "pg_mlflow"),
}
WRITER_ROLE, ANALYST_ROLE = "batchml_writer", "batchml_analyst"
DATABASE_OWNERS = {"airflow": "airflow", "warehouse": WRITER_ROLE, "mlflow": "mlflow"}

SECRET_NAMES = ("pg_superuser", "pg_airflow", "pg_writer", "pg_analyst", "pg_mlflow", "airflow_admin",
                "airflow_jwt", "airflow_api_secret", "mlflow_admin", "mlflow_user", "mlflow_flask", "spark",
                "redis")

# port name -> (preferred port, service that listens on it)
PORTS = {
    "postgres": (5432, "postgres"),
    "redis": (6379, "redis"),
    "moto": (9000, "moto-s3"),
    "spark_master": (7077, "spark-master"),
    "spark_master_ui": (8090, "spark-master"),
    "spark_worker": (7078, "spark-worker"),
    "spark_worker_ui": (8091, "spark-worker"),
    "mlflow": (5000, "mlflow"),
    "airflow_api": (8080, "airflow-api-server"),
}


@dataclass(frozen=True)
class Service:
    name: str
    celery_only: bool = False
    airflow: bool = False


SERVICES = (
    Service("postgres"),
    Service("redis", celery_only=True),
    Service("moto-s3"),
    Service("spark-master"),
    Service("spark-worker"),
    Service("mlflow"),
    Service("airflow-api-server", airflow=True),
    Service("airflow-scheduler", airflow=True),
    Service("airflow-dag-processor", airflow=True),
    Service("airflow-triggerer", airflow=True),
    Service("airflow-celery-worker", celery_only=True, airflow=True),
)
SERVICE_NAMES = [s.name for s in SERVICES]


class StackError(RuntimeError):
    """Something the user has to fix; the message says what to do next."""


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def random_free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse the `export KEY='value'` lines of stack.env (the format `write_env_file` writes)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("export "):
            continue
        key, _, value = line[len("export "):].partition("=")
        out[key] = shlex.split(value)[0] if value else ""
    return out


class StackState:
    """One state folder: where everything lives, what state.json holds, and where each service listens."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root or os.environ.get(STACK_DIR_ENV) or DEFAULT_DIR).expanduser().absolute()
        self.state_file = self.root / "state.json"
        self.env_file = self.root / "stack.env"
        self.logs = self.root / "logs"
        self.pids = self.root / "pids"
        self.home = self.root / "home"  # BATCHML_HOME of the Airflow processes
        self.airflow_home = self.root / "airflow"
        self.postgres_dir = self.root / "postgres"  # batchml.localpg's folder: data/, server.log
        self.marker = hashlib.sha1(str(self.root).encode()).hexdigest()[:16]  # in every service's environment
        self.state: dict = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    @property
    def ports(self) -> dict[str, int]:
        return self.state.get("ports", {})

    @property
    def secret(self) -> dict[str, str]:
        return self.state.get("secrets", {})

    @property
    def celery(self) -> bool:
        return bool(self.state.get("celery"))

    def services(self) -> list[str]:
        return [s.name for s in SERVICES if self.celery or not s.celery_only]

    def save_state(self) -> None:
        write_private(self.state_file, json.dumps(self.state, indent=2, sort_keys=True) + "\n")

    def prepare_state(self, celery: bool, running: set[str]) -> None:
        """Generate what is missing (secrets, the Fernet key, moto's seed) and pick a port for each service: the
        one it had, the preferred one, or a free one. `running` are the services already up (they keep theirs)."""
        state = self.state
        state.setdefault("created", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        state["celery"] = celery
        # the specs the Airflow services generate DAGs from: the caller's BATCHML_SPECS_DIR at the first `up`, else
        # the repository's specs/ (kept across restarts)
        if "specs_dir" not in state:
            state["specs_dir"] = str(Path(os.environ.get("BATCHML_SPECS_DIR") or REPO / "specs").resolve())
        generated = state.setdefault("secrets", {})
        for name in SECRET_NAMES:
            generated.setdefault(name, secrets.token_urlsafe(24))
        if "airflow_fernet" not in generated:
            from cryptography.fernet import Fernet

            generated["airflow_fernet"] = Fernet.generate_key().decode()
        state.setdefault("moto_seed", secrets.randbelow(2**31))
        running = running & set(self.services())
        ports = state.setdefault("ports", {})
        taken: set[int] = {p for key, p in ports.items() if PORTS[key][1] in running}
        for key, (preferred, owner) in PORTS.items():
            if owner not in self.services():
                continue
            current = ports.get(key)
            if current and (owner in running or (current not in taken and port_free(current))):
                taken.add(current)
                continue
            port = preferred if preferred not in taken and port_free(preferred) else random_free_port(taken)
            if current:
                if running:
                    raise StackError(
                        f"port {current} of {owner} ({key}) is taken by another program, and services started with "
                        f"the old port still run: run `bin/stack down`, then `bin/stack up` again"
                    )
                say(f"note: port {current} ({key}) is taken by another program; {owner} moves to {port}")
            ports[key] = port
            taken.add(port)
        self.save_state()

    def pg_url(self, role: str, driver: str = "postgresql+psycopg") -> str:
        database, secret = PG_ROLES[role]
        return f"{driver}://{role}:{quote(self.secret[secret], safe='')}@{HOST}:{self.ports['postgres']}/{database}"

    def redis_url(self) -> str:
        return f"redis://:{quote(self.secret['redis'], safe='')}@{HOST}:{self.ports['redis']}/0"

    @property
    def urls(self) -> dict[str, str]:
        p = self.ports
        urls = {
            "postgres": f"postgresql://{HOST}:{p['postgres']}",
            "moto-s3": f"http://{HOST}:{p['moto']}",
            "spark-master": f"spark://{HOST}:{p['spark_master']}",
            "spark-master-ui": f"http://{HOST}:{p['spark_master_ui']}",
            "spark-worker": f"http://{HOST}:{p['spark_worker_ui']}",
            "mlflow": f"http://{HOST}:{p['mlflow']}",
            "airflow-api-server": f"http://{HOST}:{p['airflow_api']}",
        }
        if self.celery:
            urls["redis"] = f"redis://{HOST}:{p['redis']}"
        return urls

    def service_url(self, name: str) -> str:
        urls = self.urls if self.ports else {}
        if name == "spark-master" and urls:
            return f"{urls['spark-master']} (UI {urls['spark-master-ui']})"
        return urls.get(name, "-")

    @property
    def env(self) -> dict[str, str]:
        """The client environment stack.env holds (every password included)."""
        return read_env_file(self.env_file)

    @contextlib.contextmanager
    def lock(self):
        """One `bin/stack` command at a time per state folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StackError(f"another `bin/stack` command is working on {self.root}: wait for it") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
