"""The stack's processes: starting a service in a session of its own with its log and PID record, finding which
services run (by PID and start time), waiting for a port, and stopping process groups and whatever is left."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from batchml.stack.state import BIN, SERVICE_NAMES, StackError, StackState, listening, write_private

log = logging.getLogger(__name__)

# variables of the caller's shell that must not leak into the services (bin/env.sh sets several of them)
SCRUBBED_PREFIXES = ("BATCHML_", "AIRFLOW_", "AIRFLOW__", "AWS_", "MLFLOW_", "SPARK_", "PYSPARK_", "GX_", "PG",
                     "_AIRFLOW", "JAVA_TOOL_OPTIONS")


def base_env() -> dict[str, str]:
    """The caller's environment without anything that configures batchml, Airflow, AWS, MLflow, Spark or libpq."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    return env


def pid_file(stack: StackState, name: str) -> Path:
    return stack.pids / f"{name}.json"


def pid(stack: StackState, name: str) -> int | None:
    """PID of a running service of this stack (checked against the start time recorded with it)."""
    import psutil

    if name == "postgres":
        try:
            found = int((stack.postgres_dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:  # a stale postmaster.pid (after a crash) may name a PID another program has now
            return found if psutil.Process(found).name().startswith("postgres") else None
        except psutil.Error:
            return None
    try:
        record = json.loads(pid_file(stack, name).read_text())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["started"]) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return record["pid"]


def running(stack: StackState, names=SERVICE_NAMES) -> set[str]:
    return {name for name in names if pid(stack, name)}


def started_at(stack: StackState, name: str) -> float | None:
    """Epoch seconds when the service's process started."""
    import psutil

    found = pid(stack, name)
    try:
        return psutil.Process(found).create_time() if found else None
    except psutil.Error:
        return None


def spawn(stack: StackState, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
    """Start a service in a session of its own, its output appended to logs/<name>.log; record its PID."""
    import psutil

    with open(stack.logs / f"{name}.log", "ab") as out:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        out.write(f"\n=== {stamp} bin/stack up: {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**env, "BATCHML_STACK_MARKER": stack.marker}, cwd=cwd or stack.root,
                                start_new_session=True)
    record = {"pid": proc.pid, "started": psutil.Process(proc.pid).create_time(), "argv": argv[:3]}
    write_private(pid_file(stack, name), json.dumps(record) + "\n")
    log.info("started %s (pid %s): %s", name, proc.pid, shlex.join(argv))
    return proc.pid


def log_path(stack: StackState, name: str) -> Path:
    return stack.postgres_dir / "server.log" if name == "postgres" else stack.logs / f"{name}.log"


def log_tail(stack: StackState, name: str, lines: int = 30) -> str:
    path = log_path(stack, name)
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_port(stack: StackState, name: str, port: int, deadline: float) -> None:
    """Until the service listens on its port; fail when it exits first or the deadline passes."""
    while not listening(port):
        if not pid(stack, name):
            raise StackError(f"{name} exited during start-up; the end of its log:\n{log_tail(stack, name)}")
        if time.monotonic() > deadline:
            raise StackError(f"{name} does not listen on {port}; see `bin/stack logs {name}`")
        time.sleep(0.2)


def stack_processes(stack: StackState) -> list:
    """Every live process of this stack (psutil.Process): the services, whatever runs in their sessions (each
    service starts a session of its own), their descendants, and processes carrying the stack's marker in their
    environment (setproctitle hides it in some, hence the sessions)."""
    import psutil

    sessions = {found for name in SERVICE_NAMES if (found := pid(stack, name))}
    found = {}
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if os.getsid(proc.pid) in sessions or proc.environ().get("BATCHML_STACK_MARKER") == stack.marker:
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            continue
    for proc in list(found.values()):
        with contextlib.suppress(psutil.Error):
            found.update({child.pid: child for child in proc.children(recursive=True)})
    return list(found.values())


def ports_still_listening(stack: StackState, wait: float = 10.0) -> list[int]:
    deadline = time.monotonic() + wait
    while True:
        busy = [port for port in stack.ports.values() if listening(port)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.3)


def alive(pid_: int) -> bool:
    try:
        os.kill(pid_, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(pids: list[int], timeout: float, leftovers: float = 10.0) -> None:
    """Stop services the way their own supervisors expect: SIGTERM to each service's main process only, and up to
    `timeout` for them to stop (Airflow's components stop their children themselves: the scheduler its LocalExecutor
    workers, the triggerer its trigger runner, the Celery worker its pool). Then SIGTERM whatever is left in their
    process groups (every service runs in a session of its own) or below them, e.g. the uvicorn server `mlflow server`
    leaves behind, and SIGKILL what is still there after `leftovers` seconds.

    Signalling every process at once instead costs time or hangs: the triggerer's runner, signalled directly, makes
    the triggerer wait 10 s for it, and a second SIGTERM cuts the scheduler's shutdown short (it then waits forever
    for a LocalExecutor worker that never got its stop message)."""
    import psutil

    leaders, others = [], []
    for leader in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(leader)
            leaders.append(root)
            others += root.children(recursive=True)
    terminate(leaders, timeout)
    with contextlib.suppress(psutil.Error):  # in a group but not (or no longer) below the leader
        others += [proc for proc in psutil.process_iter() if _group(proc.pid) in pids]
    others = list({proc.pid: proc for proc in others if not exited(proc)}.values())
    for leader in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, signal.SIGTERM)
    terminate(others, leftovers, signalled={proc.pid for proc in others if _group(proc.pid) in pids})


def terminate(procs: list, timeout: float, signalled: set[int] = frozenset()) -> None:
    """SIGTERM (those not `signalled` already), wait up to `timeout` for all of them together, SIGKILL the rest."""
    import psutil

    for proc in procs:
        if proc.pid not in signalled:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
    left = wait_gone(procs, timeout)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            log.warning("pid %s did not stop within %.0f s: killing it", proc.pid, timeout)
            proc.kill()
    wait_gone(left, 5.0)


def wait_gone(procs: list, timeout: float) -> list:
    """Wait until every process has exited; return those still running after `timeout`. A zombie has exited: the
    services are orphans (their `bin/stack up` is gone), and init may take a second or two to reap them, which
    psutil.wait_procs would wait for."""
    deadline = time.monotonic() + timeout
    while True:
        left = [proc for proc in procs if not exited(proc)]
        if not left or time.monotonic() >= deadline:
            return left
        procs = left
        time.sleep(0.05)


def exited(proc) -> bool:
    """True when the process (psutil.Process) is gone, is a zombie, or its PID now names another process."""
    import psutil

    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _group(pid_: int) -> int | None:
    try:
        return os.getpgid(pid_)
    except OSError:
        return None


def descendants(pid_: int) -> set[int]:
    import psutil

    try:
        return {child.pid for child in psutil.Process(pid_).children(recursive=True)}
    except psutil.Error:
        return set()
