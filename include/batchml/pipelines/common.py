"""What every generated DAG shares: default arguments, docs, schedules, the date a run is for, and the `step`
wrapper that turns a package function into a task body (typed results through XCom, errors that fail at once)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import typing
from collections.abc import Callable
from typing import Any

from batchml.errors import BatchMLError, SpecError, is_permanent, what_to_do
from batchml.results import StepResult
from batchml.settings import Settings, get_settings
from batchml.specs import UseCaseSpec, discover

log = logging.getLogger(__name__)

AS_OF_PARAM_DOC = "Date the run is for (YYYY-MM-DD). Empty: the run's logical date."


def default_args(spec: UseCaseSpec) -> dict[str, Any]:
    from batchml.pipelines.alerts import on_failure

    return {
        "owner": spec.owner,
        "on_failure_callback": on_failure(),  # logs, and posts to BATCHML_ALERT_CONN_ID when set
        # transient failures (network, a lost executor) are retried; bad data is not (see `step`)
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=20),
    }


def start_datetime(spec: UseCaseSpec) -> dt.datetime:
    d = spec.start_date
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


def tags(spec: UseCaseSpec, kind: str) -> list[str]:
    return list(dict.fromkeys(["batchml", spec.name, kind, *spec.tags]))


def doc_md(spec: UseCaseSpec, kind: str, body: str) -> str:
    path = spec.path.name if spec.path else f"{spec.name}.yaml"
    return (
        f"### `{spec.dag_id(kind)}`\n\n{spec.description.strip()}\n\n{body.strip()}\n\n"
        f"*Generated from `specs/{path}` (owner: {spec.owner}). Edit the spec, not this DAG.*"
    )


def dag_args(spec: UseCaseSpec, kind: str, doc: str, schedule, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of `@dag` every generated DAG shares: id, schedule, start, owner and retries, tags, docs."""
    return {
        "dag_id": spec.dag_id(kind),
        "schedule": schedule,
        "start_date": start_datetime(spec),
        "catchup": False,
        "default_args": default_args(spec),
        "tags": tags(spec, kind),
        "doc_md": doc_md(spec, kind, doc),
        **overrides,
    }


def as_of_params() -> dict[str, Any]:
    """The `as_of` param of DAGs that run for one date."""
    from airflow.sdk import Param

    return {"as_of": Param(None, type=["null", "string"], format="date", description=AS_OF_PARAM_DOC)}


def assets_or_cron(assets, cron: str | None):
    """A schedule: every event of `assets`, and also `cron` (UTC) when the spec sets one."""
    if not cron:
        return assets
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=assets)


def asset(spec: UseCaseSpec, what: str):
    """The asset `<use case>.<what>` (features, scores, model, retrain_request), identified by name alone: the same
    asset whatever the data root of an environment, and no URI scheme that makes Airflow load providers to parse."""
    from airflow.sdk import Asset

    return Asset(name=f"{spec.name}.{what}")


def _date(value: object, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise BatchMLError(f"{where}={value!r}: expected a date as YYYY-MM-DD") from None


def triggering_extra(context, key: str) -> dict | None:
    """The extra of the newest triggering asset event that carries `key` (a date), or None."""
    newest = None
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            if (event.extra or {}).get(key) and (newest is None or event.timestamp >= newest.timestamp):
                newest = event
    return dict(newest.extra) if newest else None


def run_date(context, param: str = "as_of", event_key: str = "as_of") -> dt.date:
    """The date a run is for: the date param if given, else the date the triggering asset event carries, else the
    logical date, else when the run was triggered."""
    raw = (context.get("params") or {}).get(param)
    if raw:
        return _date(raw, f"param {param}")
    extra = triggering_extra(context, event_key)
    if extra:
        return _date(extra[event_key], f"asset event {event_key}")
    logical = context.get("logical_date") or context["dag_run"].run_after
    day = logical.date()
    return dt.date(day.year, day.month, day.day)  # a plain date: database drivers do not all adapt pendulum's


def run_label(context) -> str:
    """A file-name-safe label of the run, used for Data Docs and staging folders."""
    run_id = str(context.get("run_id") or "manual")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)


def _short(exc: BaseException, limit: int = 600) -> str:
    """The first lines of an error (a Py4J or Java trace is pages long), at most `limit` characters."""
    lines = [line for line in str(exc).splitlines() if line.strip()][:4]
    text = " | ".join(line.strip() for line in lines)
    return text if len(text) <= limit else text[:limit] + " ..."


def step(func: Callable) -> Callable:
    """Wrap a task body: arguments annotated with a StepResult type are read back from their XCom form, a returned
    StepResult is stored in its XCom form, and errors no retry can fix (bad data, a bad spec or setting, a missing
    connection or driver, a corrupt file: `errors.is_permanent`) fail the task at once, with a short message that
    says what to do; transient ones (network, locks, timeouts) are raised as they are, for Airflow to retry."""
    hints = typing.get_type_hints(func)
    signature = inspect.signature(func)
    typed = {name: tp for name, tp in hints.items()
             if name != "return" and isinstance(tp, type) and issubclass(tp, StepResult)}

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name, tp in typed.items():
            if name in bound.arguments and bound.arguments[name] is not None:
                bound.arguments[name] = tp.from_xcom(bound.arguments[name])
        try:
            out = func(*bound.args, **bound.kwargs)
        except Exception as exc:
            if not is_permanent(exc):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            if isinstance(exc, BatchMLError):
                raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
            raise AirflowFailException(f"{type(exc).__name__}: {_short(exc)}. What to do: {what_to_do(exc)} "
                                       "(not retried: a retry cannot fix this)") from exc
        return out.to_xcom() if isinstance(out, StepResult) else out

    return wrapper


def wait_for_input(spec: UseCaseSpec, settings: Settings, kind: str, day: Callable[[Any], dt.date] = run_date):
    """A sensor task waiting, in reschedule mode (no worker slot held between checks), until the input of a scheduled
    run has landed: it fails with the list of what is missing after the spec's `wait.timeout_hours`. Runs triggered
    by hand, by an asset event or a backfill do not wait (their own first task fails at once if input is missing)."""
    from airflow.sdk import get_current_context, task

    @task.sensor(task_id="wait_for_input", mode="reschedule", poke_interval=spec.wait.poke_minutes * 60,
                 timeout=(spec.wait.timeout_hours + 1) * 3600)  # our own deadline, with its message, comes first
    @step
    def wait() -> bool:
        from batchml.partitions import input_ready

        context = get_current_context()
        dag_run = context["dag_run"]
        if dag_run.run_type != "scheduled":
            return True
        return input_ready(spec, settings, kind, day(context), dag_run.start_date)

    return wait()


def spark_connection(conn_id: str) -> tuple[str, dict[str, str]]:
    """The Spark master URL and confs of an Airflow connection (host[:port] and extras, as the Spark provider reads
    them); ConfigurationError when the connection does not exist."""
    from airflow.sdk import BaseHook

    from batchml.errors import ConfigurationError

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, whatever module it comes from
        if "NotFound" not in type(exc).__name__ and "isn't defined" not in str(exc):
            raise
        raise ConfigurationError(
            f"Airflow connection {conn_id!r} (BATCHML_SPARK_CONN_ID) does not exist: define it, e.g. "
            f"AIRFLOW_CONN_{conn_id.upper()}='{{\"conn_type\": \"spark\", \"host\": \"local[*]\"}}' "
            "(bin/env.sh does), or point BATCHML_SPARK_CONN_ID at an existing one") from None
    extras = {k: str(v) for k, v in (conn.extra_dejson or {}).items()}
    if conn.conn_type == "spark_connect":
        return connect_url(conn.host, conn.port, extras), {k: v for k, v in extras.items() if k.startswith("spark.")}
    master = f"{conn.host}:{conn.port}" if conn.port else (conn.host or "local[*]")
    return master, extras


def connect_url(host: str | None, port: int | None, extras: dict[str, str]) -> str:
    """The `sc://` URL of a `spark_connect` connection (the Spark provider's fields: host, port, and the extras
    `token`, `use_ssl`, `user_id`)."""
    from batchml.errors import ConfigurationError
    from batchml.spark import DEFAULT_PORT

    host = (host or "").removeprefix("sc://").split("/")[0]
    if not host:
        raise ConfigurationError("the spark_connect connection has no host: set it to the Spark Connect server's "
                                 "host name (e.g. localhost for `batchml spark-server` on this machine)")
    params = [f"{name}={extras[name]}" for name in ("token", "use_ssl", "user_id") if extras.get(name)]
    return f"sc://{host}:{port or DEFAULT_PORT}" + (f"/;{';'.join(params)}" if params else "")


def spark_for(settings: Settings, context):
    """The task's Spark session (a context manager), on the master and confs of the Spark connection."""
    from batchml.spark import spark_session

    master, conf = spark_connection(settings.spark_conn_id)
    ti = context["ti"]
    return spark_session(master, conf, f"{ti.dag_id}-{ti.task_id}")


DAG_KINDS = ("features", "training", "model_admin", "scoring", "monitoring")
"""The DAGs every spec generates, `<use case>__<kind>`, one DAG file each in dags/."""


def load_all() -> tuple[Settings, list[UseCaseSpec]]:
    """Settings and every valid spec, read at DAG-parse time (cheap: YAML and pydantic only). Invalid specs are left
    out here and reported by `raise_spec_errors` (dags/spec_errors.py), so that one use case's mistake never takes
    the other use cases' DAGs with it."""
    settings = get_settings()
    return settings, discover(settings.specs_dir).specs


def raise_spec_errors() -> None:
    """Raise one error naming every invalid spec (file, field, reason) and the DAGs it would generate: Airflow shows
    it as the import error of the file that calls this."""
    settings = get_settings()
    errors = discover(settings.specs_dir).errors
    if errors:
        parts = [f"{message}\n  -> not generated: {', '.join(f'{path.stem}__{kind}' for kind in DAG_KINDS)}"
                 for path, message in errors.items()]
        raise SpecError(f"{len(errors)} invalid spec(s) in {settings.specs_dir}; the other use cases' DAGs are "
                        "unaffected. Fix the spec and the DAGs come back at the next parse:\n" + "\n".join(parts))
