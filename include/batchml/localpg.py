"""A throwaway local PostgreSQL server (initdb + pg_ctl) for tests and benchmarks: the real warehouse engine,
started on a free loopback port in a folder of its own, with no installation step.

PostgreSQL refuses to run as root; when the current user is root, the server runs as the `postgres` system user
(through `runuser`), which must own the data folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

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

    def __init__(self, root: Path | None = None, database: str = "batchml", port: int | None = None):
        # by default a fresh folder directly under the system temp dir, which the postgres user can traverse
        # (pytest's and mkdtemp's own folders are private to the current user)
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="batchml-pg-"))
        self.data = self.root / "data"
        self.database = database
        self.port = port or _free_port()
        self.bin = find_bin_dir()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def start(self) -> LocalPostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            self.root.chmod(0o700)
            shutil.chown(self.root, "postgres", "postgres")
        self._run(self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50 "
                   "-c shared_buffers=256MB -c max_wal_size=2GB")
        self._run(self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "server.log", "-w",
                  "-t", "60", "start")
        import psycopg

        deadline = time.time() + 30
        while True:
            try:
                with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{self.database}"')
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        return self

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
