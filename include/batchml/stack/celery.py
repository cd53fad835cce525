"""The CeleryExecutor's own services (`bin/stack up --celery`): Redis as the broker, with a password, and the
health of the Celery worker (a ping over that broker). The worker itself starts as an Airflow component."""

from __future__ import annotations

import shutil

from batchml.stack.processes import base_env, spawn
from batchml.stack.state import HOST, StackState, write_private


def start_redis(stack: StackState) -> None:
    folder = stack.root / "redis"
    folder.mkdir(mode=0o700, exist_ok=True)
    conf = folder / "redis.conf"
    write_private(conf, "\n".join([
        f"bind {HOST}", f"port {stack.ports['redis']}", "protected-mode yes",
        f"requirepass {stack.secret['redis']}", f"dir {folder}", "daemonize no", 'logfile ""',
        "save 300 10", "appendonly no",
    ]) + "\n")
    spawn(stack, "redis", [shutil.which("redis-server") or "redis-server", str(conf)], base_env())


def health_redis(stack: StackState) -> tuple[bool, str]:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(host=HOST, port=stack.ports["redis"], password=stack.secret["redis"], socket_timeout=2)
    client.ping()
    try:
        # no retries: redis-py retries a refused login (an AuthenticationError is a ConnectionError) with back-off
        redis.Redis(host=HOST, port=stack.ports["redis"], socket_timeout=2, retry=Retry(NoBackoff(), 0)).ping()
        return False, "answers without a password"
    except redis.AuthenticationError:
        return True, "PING with the password; refused without"


def health_worker(stack: StackState) -> tuple[bool, str]:
    from celery import Celery

    app = Celery(broker=stack.redis_url())
    try:
        replies = app.control.ping(timeout=1.0, limit=1)  # the stack's one worker: no need to wait the full second
    finally:
        app.close()
    if not replies:
        return False, "no reply to a Celery ping"
    return True, f"{len(replies)} worker(s) answer a Celery ping over the broker"
