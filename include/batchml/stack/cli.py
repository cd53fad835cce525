"""The `bin/stack` command (`python -m batchml.stack`): up, status, logs, env, down, and the internal `_moto-server`
(the moto-s3 service's own process). Its output is its own; StackError becomes a message on stderr and exit 1."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from batchml.stack.lifecycle import Stack
from batchml.stack.output import display, elapsed, say
from batchml.stack.s3 import serve_moto
from batchml.stack.state import SERVICE_NAMES, STACK_DIR_ENV, StackError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bin/stack",
        description="A production-like batchml stack on 127.0.0.1, without Docker (see docs/deploy.md). "
                    f"State folder: ${STACK_DIR_ENV} or .local/stack.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,status,logs,env,down}")
    up = sub.add_parser("up", help="start every service and wait until each one is healthy")
    up.add_argument("--celery", action="store_true", help="CeleryExecutor with a Redis broker and a Celery worker")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health (default 300)")
    sub.add_parser("status", help="PID, URL and health of each service (exit 1 when one is not healthy)")
    logs = sub.add_parser("logs", help="the end of a service's log, or of every log")
    logs.add_argument("service", nargs="?", choices=[*SERVICE_NAMES, "airflow-db-migrate"])
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    env = sub.add_parser("env", help="where the credentials / client environment file is, and how to use it")
    env.add_argument("--path", action="store_true", help="print only its path: source \"$(bin/stack env --path)\"")
    down = sub.add_parser("down", help="stop everything the stack started")
    down.add_argument("--purge", action="store_true", help="also delete the state folder (data, secrets, logs)")
    moto = sub.add_parser("_moto-server")  # internal: the moto-s3 service's process
    moto.add_argument("--port", type=int, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "_moto-server":
        serve_moto(args.port)
        return 0
    stack = Stack()
    try:
        if args.command == "up":
            stack.up(celery=args.celery, timeout=args.timeout)
        elif args.command == "status":
            return _status(stack)
        elif args.command == "logs":
            return _logs(stack, args)
        elif args.command == "env":
            return _env(stack, args.path)
        elif args.command == "down":
            return _down(stack, args.purge)
    except StackError as exc:
        sys.stderr.write(f"bin/stack {args.command}: {exc}\n")
        return 1
    return 0


def _status(stack: Stack) -> int:
    if not stack.state:
        say(f"no stack in {display(stack.root)}: start one with `bin/stack up`")
        return 1
    health = stack.health()
    stack.print_table(health)
    say(f"credentials: {display(stack.env_file)}")
    return 0 if all(ok for ok, _ in health.values()) else 1


def _logs(stack: Stack, args: argparse.Namespace) -> int:
    names = [args.service] if args.service else [*stack.services(), "airflow-db-migrate"]
    paths = [stack.log_path(n) for n in names if stack.log_path(n).exists()]
    if not paths:
        say(f"no logs yet in {display(stack.logs)}")
        return 1
    cmd = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), *map(str, paths)]
    os.execvp("tail", cmd)


def _env(stack: Stack, path_only: bool) -> int:
    if not stack.env_file.exists():
        say(f"no {display(stack.env_file)} yet: run `bin/stack up`")
        return 1
    if path_only:
        say(str(stack.env_file))
        return 0
    say(f"# credentials and client environment of the stack (mode 600): {stack.env_file}")
    say(f"source {display(stack.env_file)}")
    say("# it sets: " + " ".join(sorted(stack.env)))
    return 0


def _down(stack: Stack, purge: bool) -> int:
    if not stack.state:
        say(f"no stack in {display(stack.root)}")
        return 0
    started, ports = time.monotonic(), sorted(stack.ports.values())
    busy = stack.down(purge=purge)
    if busy:
        say(f"still listening on 127.0.0.1: {busy} (not this stack's processes?); check: ss -ltnp")
        return 1
    say(f"stopped in {elapsed(started)}; nothing listens on the stack's ports {ports}")
    if purge:
        say(f"deleted {display(stack.root)}")
    return 0
