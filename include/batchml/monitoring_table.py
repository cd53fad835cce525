"""The monitoring table `<use case>_monitoring`: one row per figure and date (drift, realized performance,
retraining decisions and schedules), replaced when a date is monitored again; and what later runs and the drift
report read back from it (the last request, a pending schedule, the recent history)."""

from __future__ import annotations

import datetime as dt

from batchml import warehouse as wh
from batchml.retraining import ScheduledRetrain

STATUSES = "ok, warn, alert, info, skipped, requested, scheduled, suppressed"


def monitoring_table(name: str, metadata=None):
    import sqlalchemy as sa

    metadata = metadata if metadata is not None else sa.MetaData()
    return sa.Table(
        wh.check_identifier(name), metadata,
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("model_role", sa.String(16), nullable=False),
        sa.Column("model_version", sa.Integer),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("feature", sa.Text),
        sa.Column("value", sa.Double),
        sa.Column("threshold", sa.Double),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("airflow_run_id", sa.Text),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Index(f"ix_{name}_day", "as_of_date", "metric"),
        comment="Monitoring figures per date: feature drift (PSI, KS, chi-square, null and unseen shares), "
                "prediction drift (score PSI), realized performance on matured labels, retraining decisions. "
                f"status: {STATUSES}.",
    )


def table_migrations(name: str) -> list[wh.Migration]:
    return [wh.Migration(f"monitoring:{name}", 1, f"monitoring table {name}",
                         lambda conn: monitoring_table(name).create(conn))]


def replace_rows(eng, name: str, day: dt.date, rows: list[dict]) -> int:
    """Replace `day`'s monitoring rows in one transaction (a re-run never duplicates them)."""
    wh.migrate(eng, table_migrations(name))
    table = monitoring_table(name)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    columns = [c.name for c in table.columns]
    payload = [{**{c: r.get(c) for c in columns}, "as_of_date": day, "recorded_at": now} for r in rows]
    with eng.begin() as conn:
        conn.execute(table.delete().where(table.c.as_of_date == day))
        if payload:
            conn.execute(table.insert(), payload)
    return len(payload)


def last_retrain_request(eng, name: str, before: dt.date) -> dt.date | None:
    """The most recent date before `before` on which monitoring requested a retraining run."""
    import sqlalchemy as sa

    wh.migrate(eng, table_migrations(name))
    table = monitoring_table(name)
    with eng.connect() as conn:
        value = conn.execute(sa.select(sa.func.max(table.c.as_of_date)).where(
            table.c.metric == "retrain_request", table.c.status == "requested", table.c.as_of_date < before)).scalar()
    if value is None:
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def retrain_verdict(eng, name: str, day: dt.date) -> dict | None:
    """The retraining decision monitoring recorded for `day` (status, detail) and the day's count of drift alerts;
    None when monitoring has not run for that day."""
    import sqlalchemy as sa

    if name not in wh.table_names(eng):
        return None
    table = monitoring_table(name)
    with eng.connect() as conn:
        row = conn.execute(sa.select(table.c.status, table.c.detail).where(
            table.c.as_of_date == day, table.c.metric == "retrain_request")).first()
        alerts = conn.execute(sa.select(sa.func.count()).where(
            table.c.as_of_date == day, table.c.status == "alert")).scalar()
    return None if row is None else {"status": row.status, "detail": row.detail, "alerts": int(alerts)}


def latest_schedule(eng, name: str, before: dt.date) -> tuple[ScheduledRetrain, str] | None:
    """The newest drift-triggered retraining schedule recorded before `before`, and its status: `scheduled` while it
    waits for the drift's labels, `requested` once the monitoring run of its date requested it."""
    import sqlalchemy as sa

    if name not in wh.table_names(eng):
        return None
    table = monitoring_table(name)
    with eng.connect() as conn:
        row = conn.execute(sa.select(table.c.status, table.c.detail).where(
            table.c.metric == "retrain_scheduled", table.c.as_of_date < before)
            .order_by(table.c.as_of_date.desc()).limit(1)).first()
    schedule = ScheduledRetrain.parse(row.detail) if row else None
    return (schedule, row.status) if schedule else None


def pending_schedule(eng, name: str, before: dt.date) -> ScheduledRetrain | None:
    """The retraining a drift scheduled and no monitoring run has requested yet (None when there is none)."""
    found = latest_schedule(eng, name, before)
    return found[0] if found and found[1] == "scheduled" else None


def history(eng, name: str, last: dt.date, days: int, features: list[str]):
    """Score PSI and the PSI of `features` on the monitored dates of the `days` days up to `last` (a DataFrame:
    as_of_date, metric, feature, value), for the drift report's chart."""
    import pandas as pd
    import sqlalchemy as sa

    if name not in wh.table_names(eng):
        return pd.DataFrame(columns=["as_of_date", "metric", "feature", "value"])
    table = monitoring_table(name)
    first = last - dt.timedelta(days=days - 1)
    query = (sa.select(table.c.as_of_date, table.c.metric, table.c.feature, table.c.value)
             .where(table.c.as_of_date.between(first, last), table.c.model_role == "champion",
                    sa.or_(table.c.metric == "score_psi",
                           sa.and_(table.c.metric == "psi", table.c.feature.in_(features or [""]))))
             .order_by(table.c.as_of_date))
    with eng.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    return frame
