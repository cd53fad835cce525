"""A throwaway local PostgreSQL server (initdb + pg_ctl) for tests and benchmarks: the real warehouse engine,
started on a free loopback port in a folder of its own, with no installation step.

PostgreSQL refuses to run as root; when the current user is root, the server runs as the `postgres` system user
(through `runuser`), which must own the data folder.

By default the server is disposable: trust authentication, fsync off, and `stop()` deletes its folder. For a server
that outlives the process (`batchml.stack`), pass `password=` (the superuser gets it and TCP connections need a
password: scram-sha-256), `durable=True` (crash-safe settings) and stop it with `stop(remove=False)`; `start()` then
reuses an existing data folder instead of running initdb again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

DEFAULT_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def find_bin_dir() -> Path:
    """The folder holding initdb/pg_ctl: $PG_BIN_DIR, the PATH, or Debian's versioned folders."""
    candidates = [os.environ.get("PG_BIN_DIR"), *DEFAULT_BIN_DIRS]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.insert(1, str(Path(on_path).resolve().parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them (e.g. apt-get install postgresql) "
        "or set PG_BIN_DIR"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """`with LocalPostgres(folder) as pg: pg.url` gives a SQLAlchemy URL of a fresh, empty database."""

    # settings of a disposable server: fast, not crash-safe
    FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

    def __init__(self, root: Path | None = None, database: str = "batchml", port: int | None = None,
                 password: str | None = None, durable: bool = False, settings: dict[str, str] | None = None):
        # by default a fresh folder directly under the system temp dir, which the postgres user can traverse
        # (pytest's and mkdtemp's own folders are private to the current user)
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="batchml-pg-"))
        self.data = self.root / "data"
        self.database = database
        self.port = port or _free_port()
        self.password = password
        self.durable = durable
        self.settings = dict(settings or {})
        self.bin = find_bin_dir()
        self._as_postgres = os.geteuid() == 0

    @property
    def _credentials(self) -> str:
        return f"postgres:{quote(self.password, safe='')}" if self.password else "postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self._credentials}@127.0.0.1:{self.port}/{self.database}"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://{self._credentials}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster (from postmaster.pid), or None when the server is not running."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def _initdb(self) -> None:
        args = [self.bin / "initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--no-sync", "--locale=C"]
        if not self.password:
            self._run(*args, "-A", "trust")
            return
        pwfile = self.root / ".initdb-password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            self._run(*args, "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", f"--pwfile={pwfile}")
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> LocalPostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            self.root.chmod(0o700)
            shutil.chown(self.root, "postgres", "postgres")
        if not self.initialized:
            self._initdb()
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(self.root),
                    **({} if self.durable else self.FAST_SETTINGS),
                    "max_connections": "50", "shared_buffers": "256MB", "max_wal_size": "2GB", **self.settings}
        options = " ".join(f"-c {key}={value}" for key, value in settings.items())
        self._run(self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.log_file, "-w",
                  "-t", "60", "start")
        import psycopg

        deadline = time.time() + 30
        while True:
            try:
                with psycopg.connect(self.libpq_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        return self

    def stop(self, remove: bool = True) -> None:
        """Stop the server; `remove=False` shuts it down cleanly and keeps its folder for the next `start()`."""
        if self.data.exists():
            try:
                self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate" if remove else "fast", "-w",
                          "-t", "60", "stop")
            except RuntimeError:
                pass
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
