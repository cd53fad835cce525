"""What every generated DAG shares: default arguments, docs, the as-of date of a run, error handling."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from batchml.errors import BatchMLError
from batchml.settings import Settings, get_settings
from batchml.specs import UseCaseSpec, discover_specs

log = logging.getLogger(__name__)

AS_OF_PARAM_DOC = "Date the run is for (YYYY-MM-DD). Empty: the run's logical date."


def default_args(spec: UseCaseSpec) -> dict[str, Any]:
    from batchml.alerts import on_failure

    return {
        "owner": spec.owner,
        "on_failure_callback": on_failure(),  # logs, and posts to BATCHML_ALERT_CONN_ID when set
        # transient failures (network, a lost executor) are retried; bad data is not (see fail_fast)
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


def resolve_as_of(context, param: str = "as_of") -> dt.date:
    """The date a run is for: the date param if given, else the logical date, else when it was triggered."""
    raw = (context.get("params") or {}).get(param)
    if raw:
        try:
            return dt.date.fromisoformat(str(raw))
        except ValueError:
            raise BatchMLError(f"param {param}={raw!r}: expected a date as YYYY-MM-DD") from None
    logical = context.get("logical_date")
    if logical is None:
        logical = context["dag_run"].run_after
    day = logical.date()
    return dt.date(day.year, day.month, day.day)  # a plain date: database drivers do not all adapt pendulum's


def run_label(context) -> str:
    """A file-name-safe label of the run, used for Data Docs and staging folders."""
    run_id = str(context.get("run_id") or "manual")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)


def fail_fast(func: Callable) -> Callable:
    """Turn batchml's own errors (bad data, bad spec, missing input) into failures that are not retried.

    Retrying cannot fix a bad landed file; the message already says what to do next.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BatchMLError as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def load_all() -> tuple[Settings, list[UseCaseSpec]]:
    """Settings and every spec, read at DAG-parse time (cheap: YAML and pydantic only)."""
    settings = get_settings()
    return settings, discover_specs(settings.specs_dir)
