"""The score table analysts query: its columns and their meaning, its views, and publishing one date atomically.

One table per use case (`<use case>_scores` unless the spec names it), keyed by entity, model role and date;
PostgreSQL partitions it by date, so that a date's rows are replaced by swapping one partition. Two views are the
analysts' entry points: `<table>_champion` (every date's champion scores) and `<table>_latest` (each entity's
newest champion score); with a daily alert budget (`training.alert_budget`, e.g. fraud), `<table>_alerts` holds each
date's top rows within it, most suspicious first. On PostgreSQL every column carries a COMMENT, and the views are readable by the role named
in `BATCHML_WAREHOUSE_READER_ROLE`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from batchml import warehouse as wh
from batchml.results import CheckedScores, LoadedScores, PublishedScores, StagedScores
from batchml.settings import Settings
from batchml.specs import UseCaseSpec
from batchml.specs.usecase import MAX_SCORE_TABLE

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ScoreColumn:
    name: str
    kind: str  # string, date, double, smallint, int, bool, timestamp
    nullable: bool
    comment: str
    since: int = 1
    """Version of the table's migrations that added the column: the table holds the columns of version 1, then
    those of version 2 (ALTER TABLE appends); the views show them in reading order."""
    position: int = 0
    """Place in reading order (the views' column order)."""

    @property
    def arrow_type(self):
        import pyarrow as pa

        return {"string": pa.string(), "date": pa.date32(), "double": pa.float64(), "smallint": pa.int16(),
                "int": pa.int32(), "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}[self.kind]

    @property
    def sql_type(self):
        import sqlalchemy as sa

        return {"string": sa.Text(), "date": sa.Date(), "double": sa.Double(), "smallint": sa.SmallInteger(),
                "int": sa.Integer(), "bool": sa.Boolean(), "timestamp": sa.DateTime(timezone=True)}[self.kind]


def _ordinal(i: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(i, f"{i}th")


def score_columns(entity_key: str, reasons: int, carried: dict[str, str] | None = None) -> list[ScoreColumn]:
    """The columns of a use case's score table, in table order (the Arrow batches written by scoring match them):
    version 1's, then version 2's (see `view_columns` for the order analysts read them in).

    `carried`: feature columns copied from the feature table, name -> feature kind (categorical or numeric).
    """
    logical = [replace(c, position=i) for i, c in enumerate(_logical_columns(entity_key, reasons, carried))]
    return [c for c in logical if c.since == 1] + [c for c in logical if c.since == 2]


def view_columns(columns: list[ScoreColumn]) -> list[ScoreColumn]:
    """The columns in reading order (each reason's name, words, value, number and impact together), as the views
    show them."""
    return sorted(columns, key=lambda c: c.position)


def _reason_slot(slot: str, what: str, since_name: int) -> list[ScoreColumn]:
    """The columns of one reason: the feature, its words, its value (text and number), its impact."""
    return [
        ScoreColumn(slot, "string", True, what, since_name),
        ScoreColumn(f"{slot}_description", "string", True,
                    f"{slot} in plain words; says 'missing' when the value was missing (filled for the model).", 2),
        ScoreColumn(f"{slot}_value", "string", True,
                    f"Value of {slot} for this entity, as text; NULL when it was missing (the model used the spec's "
                    "fill value).", since_name),
        ScoreColumn(f"{slot}_number", "double", True,
                    f"Value of {slot} as a number (NULL for a category, or when the value was missing).", 2),
        ScoreColumn(f"{slot}_impact", "double", True,
                    f"Contribution of {slot} to the log-odds of the score (SHAP; positive raises the risk).",
                    since_name),
    ]


def _logical_columns(entity_key: str, reasons: int, carried: dict[str, str] | None) -> list[ScoreColumn]:
    cols = [
        ScoreColumn(entity_key, "string", False, "Entity scored."),
        ScoreColumn("as_of_date", "date", False,
                    "Date the score is for: features use data strictly before this date (00:00 UTC)."),
        ScoreColumn("model_role", "string", False,
                    "champion (the model in use) or challenger (shadow scores, for comparison only)."),
        ScoreColumn("score", "double", False, "Probability of the label (0 to 1)."),
        ScoreColumn("risk_decile", "smallint", False,
                    "Decile of the score among this date's rows of the same model: 1 = the highest 10%."),
        ScoreColumn("risk_band", "string", False, "Band from the spec's thresholds (e.g. high, medium, low)."),
    ]
    for i in range(1, reasons + 1):
        cols += _reason_slot(f"reason_{i}", f"Feature that raises the score the {_ordinal(i)} most (SHAP "
                                            "contribution > 0); NULL when fewer features raise it, and on challenger "
                                            "rows.", 1)
    cols += _reason_slot("protective_reason", "Feature that lowers the score the most (SHAP contribution < 0); NULL "
                                              "when none does, and on challenger rows.", 2)
    for name, kind in (carried or {}).items():
        if kind == "categorical":
            cols.append(ScoreColumn(name, "string", False, f"Feature {name}, copied for grouping."))
        else:
            cols.append(ScoreColumn(name, "double", False, f"Feature {name} as scored."))
    cols += [
        ScoreColumn("reasons_exact", "bool", False,
                    "True: exact TreeSHAP reason codes; false: approximate (Saabas) or none (see the README)."),
        ScoreColumn("model_name", "string", False, "Registered MLflow model name."),
        ScoreColumn("model_version", "int", False, "MLflow model version, pinned once per scoring run."),
        ScoreColumn("airflow_run_id", "string", False, "Airflow run that wrote the row."),
        ScoreColumn("scored_at", "timestamp", False, "When the row was scored (UTC)."),
    ]
    return cols


def score_table_columns(spec: UseCaseSpec) -> list[ScoreColumn]:
    """The score table's columns for this spec (entity, score, band, reasons, carried features, lineage)."""
    kinds = spec.feature_columns()
    return score_columns(spec.entity.key, spec.scoring.reason_codes.top, {c: kinds[c] for c in spec.scoring.columns})


def arrow_schema(columns: list[ScoreColumn]):
    import pyarrow as pa

    return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in columns])


def sql_table(name: str, columns: list[ScoreColumn], metadata=None, *, keyed: bool = True, day: dt.date | None = None):
    """The score table (keyed, partitioned by date on PostgreSQL) or, with `day`, a keyless staging table shaped
    like it that only accepts rows of `day` (on PostgreSQL the same CHECK lets ATTACH PARTITION skip its scan)."""
    import sqlalchemy as sa

    metadata = metadata if metadata is not None else sa.MetaData()
    cols = [sa.Column(c.name, c.sql_type, nullable=c.nullable, comment=c.comment) for c in columns]
    extra: list = []
    kwargs: dict = {}
    if keyed:
        # entity first: the key serves lookups and day-over-day joins by entity, and it sorts fast when each date's
        # partition builds it (the other two columns are constant within a partition)
        extra.append(sa.PrimaryKeyConstraint(columns[0].name, "model_role", "as_of_date"))
        kwargs = {"postgresql_partition_by": "LIST (as_of_date)",
                  "comment": "Batch scores, one row per entity, date and model role. Written by the scoring DAG; each "
                             f"date is replaced atomically. Analysts: use the views {name}_champion and {name}_latest."}
    if day is not None:
        as_of = sa.column("as_of_date")
        extra.append(sa.CheckConstraint(sa.and_(as_of.is_not(None), as_of == sa.literal(day, sa.Date)),
                                        name=f"{name}_day"))
    return sa.Table(name, metadata, *cols, *extra, **kwargs)


def check_table_name(table: str) -> str:
    wh.check_identifier(table)
    if len(table) > MAX_SCORE_TABLE:
        raise wh.WarehouseError(f"score table name {table!r} has {len(table)} characters; at most {MAX_SCORE_TABLE} "
                                "fit (staging and partition tables append the date); set scoring.table to a shorter "
                                "name")
    return table


def _create_views(conn, scores, columns: list[ScoreColumn], table: str) -> None:
    """The analysts' views, with their columns in reading order, and their comments (PostgreSQL)."""
    import sqlalchemy as sa

    key = columns[0].name
    shown = [c.name for c in view_columns(columns)]
    champion = sa.select(*[scores.c[n] for n in shown]).where(scores.c.model_role == "champion")
    wh.create_view(conn, f"{table}_champion", champion)
    newest = (sa.select(scores.c[key], sa.func.max(scores.c.as_of_date).label("as_of_date"))
              .where(scores.c.model_role == "champion").group_by(scores.c[key]).subquery("m"))
    s = scores.alias("s")
    latest = (sa.select(*[s.c[n] for n in shown])
              .join(newest, sa.and_(s.c[key] == newest.c[key], s.c.as_of_date == newest.c.as_of_date))
              .where(s.c.model_role == "champion"))
    wh.create_view(conn, f"{table}_latest", latest)
    wh.comment_on(conn, "VIEW", f"{table}_champion", "Champion scores of every date: the analysts' default view.")
    wh.comment_on(conn, "VIEW", f"{table}_latest", "Each entity's most recent champion score.")


def migrations(table: str, columns: list[ScoreColumn]) -> list[wh.Migration]:
    """Versioned DDL of one score table, its views and (PostgreSQL) comments.

    v1: the table with the columns of version 1 (entity, score, decile, band, reason names, values as text and
    impacts, carried features, lineage) and the views. v2: each reason's words and numeric value, and the feature
    that lowers the score most (`protective_reason_*`), appended with ALTER TABLE (PostgreSQL adds them to every
    partition); the views are recreated with the columns in reading order, and every column's comment is set again
    (the reasons now say what raises the score). A new table gets v1 then v2, so it ends up exactly like a migrated
    one."""
    import sqlalchemy as sa
    from sqlalchemy.schema import SetColumnComment

    check_table_name(table)
    first = [c for c in columns if c.since == 1]

    def v1(conn) -> None:
        scores = sql_table(table, first)
        if conn.dialect.name != "postgresql":  # PostgreSQL partitions by date (and prunes partitions) instead
            sa.Index(f"ix_{table}_day", scores.c.as_of_date)
        scores.create(conn)
        _create_views(conn, scores, first, table)

    def v2(conn) -> None:
        q = lambda name: wh.quote(conn, name)  # noqa: E731
        for view in (f"{table}_champion", f"{table}_latest"):
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {q(view)}"))
        for c in columns:
            if c.since == 2:
                kind = c.sql_type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f"ALTER TABLE {q(table)} ADD COLUMN {q(c.name)} {kind}"))
        scores = sql_table(table, columns)
        if conn.dialect.name == "postgresql":
            for column in scores.columns:
                conn.execute(SetColumnComment(column))
        _create_views(conn, scores, columns, table)

    return [wh.Migration(f"scores:{table}", 1, f"score table {table}, views, comments", v1),
            wh.Migration(f"scores:{table}", 2, f"reasons in words, numeric values, protective reason in {table}",
                         v2)]


ALERT_COLUMNS = ("alert_rank", "day_rows")
"""Columns the alerts view adds in front of the champion view's: the row's rank among its date's champion scores
(1 = most suspicious) and how many rows that date has."""


def alerts_view(conn, table: str, columns: list[ScoreColumn], budget: float) -> None:
    """(Re)create `<table>_alerts`: each date's champion rows within the daily alert budget, the ceil(budget x the
    date's rows) highest scores (ties broken by key), most suspicious first (`alert_rank`). Recreated whenever the
    table is ensured, so it always follows the spec's budget; it reads the table only, so migrations of the table
    leave it valid."""
    import sqlalchemy as sa

    key = columns[0].name
    scores = sql_table(table, columns)
    shown = [c.name for c in view_columns(columns)]
    day = scores.c.as_of_date
    ranked = sa.select(
        *[scores.c[n] for n in shown],
        sa.func.row_number().over(partition_by=day, order_by=(scores.c.score.desc(), scores.c[key])).label(
            "alert_rank"),
        sa.func.count().over(partition_by=day).label("day_rows"),
    ).where(scores.c.model_role == "champion").subquery("ranked")
    # rank r is alerted iff r <= ceil(budget x rows) iff r - 1 < budget x rows (no CEIL in every SQLite build)
    alerts = (sa.select(*[ranked.c[n] for n in (*ALERT_COLUMNS, *shown)])
              .where(ranked.c.alert_rank - 1 < ranked.c.day_rows * sa.literal(float(budget)))
              .order_by(ranked.c.as_of_date.desc(), ranked.c.alert_rank))
    conn.execute(sa.text(f"DROP VIEW IF EXISTS {wh.quote(conn, f'{table}_alerts')}"))
    wh.create_view(conn, f"{table}_alerts", alerts)
    wh.comment_on(conn, "VIEW", f"{table}_alerts", f"Each date's champion scores within the daily alert budget (the "
                                                    f"top {budget:.2%} of the date's rows), most suspicious first.")


def ensure_table(eng, table: str, columns: list[ScoreColumn], reader_role: str | None = None,
                 alert_budget: float | None = None) -> list[str]:
    """Create or migrate the score table; refuse to write into one whose columns differ from the spec's; with an
    alert budget (`training.alert_budget`), (re)create the alerts view; let the analysts' role read its views."""
    import sqlalchemy as sa

    applied = wh.migrate(eng, migrations(table, columns))
    existing = [c["name"] for c in sa.inspect(eng).get_columns(table)]
    wanted = [c.name for c in columns]
    if existing != wanted:
        raise wh.WarehouseError(
            f"table {table} has columns {existing} but the spec now needs {wanted}; add a migration for the new "
            "columns (see batchml.score_table.migrations) or set scoring.table to a new table"
        )
    if alert_budget is not None:
        with eng.begin() as conn:
            alerts_view(conn, table, columns, alert_budget)
    if reader_role and eng.dialect.name == "postgresql":
        with eng.begin() as conn:
            kinds = ("champion", "latest", *(("alerts",) if alert_budget is not None else ()))
            views = ", ".join(wh.quote(conn, f"{table}_{v}") for v in kinds)
            conn.execute(sa.text(f"GRANT SELECT ON {views} TO {wh.quote(conn, reader_role)}"))
    return applied


def read_scores(eng, table: str, key: str, day: dt.date, role: str = "champion"):
    """(entity, score, model_version) of one date and model role, as a DataFrame."""
    import pandas as pd
    import sqlalchemy as sa

    if table not in wh.table_names(eng):
        return pd.DataFrame(columns=[key, "score", "model_version"])
    sqlite = eng.dialect.name == "sqlite"
    t = sa.table(table, sa.column(key), sa.column("score"), sa.column("model_version"),
                 sa.column("as_of_date", sa.String if sqlite else sa.Date), sa.column("model_role", sa.String))
    query = sa.select(t.c[key], t.c.score, t.c.model_version).where(
        t.c.as_of_date == (day.isoformat() if sqlite else day), t.c.model_role == role)
    return wh.read_frame(eng, query)


def scored_dates(eng, table: str, first: dt.date, last: dt.date) -> list[dt.date]:
    """The dates in [first, last] that have scores."""
    import sqlalchemy as sa

    if table not in wh.table_names(eng):
        return []
    t = sa.table(table, sa.column("as_of_date"))
    bounds = (first.isoformat(), last.isoformat()) if eng.dialect.name == "sqlite" else (first, last)
    with eng.connect() as conn:
        values = conn.execute(sa.select(t.c.as_of_date).distinct().where(t.c.as_of_date.between(*bounds))).scalars()
        return sorted(v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10]) for v in values)


def read_score_rows(eng, table: str, key: str, days: list[dt.date]):
    """(entity, as_of_date, model_role, model_version, score) of every role on `days`, as a DataFrame."""
    import pandas as pd
    import sqlalchemy as sa

    columns = [key, "as_of_date", "model_role", "model_version", "score"]
    if not days or table not in wh.table_names(eng):
        return pd.DataFrame(columns=columns)
    sqlite = eng.dialect.name == "sqlite"
    types = {"as_of_date": sa.String if sqlite else sa.Date, "model_role": sa.String}
    t = sa.table(table, *[sa.column(c, types.get(c)) for c in columns])
    values = [d.isoformat() for d in days] if sqlite else list(days)
    frame = wh.read_frame(eng, sa.select(*[t.c[c] for c in columns]).where(t.c.as_of_date.in_(values)))
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    return frame


# Steps of the scoring DAG ------------------------------------------------------------------------------------------


def staging_dir(spec: UseCaseSpec, settings: Settings, as_of: dt.date) -> Path:
    from batchml.storage import partition_name

    return settings.staging_root / "scores" / spec.name / partition_name(as_of)


def load_staging(spec: UseCaseSpec, settings: Settings, staged: StagedScores, label: str) -> LoadedScores:
    """Create the score table if needed (versioned DDL), then bulk-load the staged file into a staging table."""
    import pyarrow.parquet as pq

    table = spec.score_table
    eng = wh.engine(settings.warehouse_url)
    wh.ping(eng)
    columns = score_table_columns(spec)
    ensure_table(eng, table, columns, settings.warehouse_reader_role, spec.training.alert_budget)
    wh.drop_stale_staging(eng, table, staged.as_of)
    staging = wh.staging_name(table, staged.as_of, label)
    sql_table(staging, columns, keyed=False, day=staged.as_of).create(eng)
    started = time.perf_counter()
    try:
        file = pq.ParquetFile(staged.staged_file)
        rows = wh.bulk_load(eng, staging, file.iter_batches(batch_size=spec.scoring.chunk_rows), file.schema_arrow)
    except Exception:
        wh.drop_table(eng, staging)
        raise
    seconds = round(time.perf_counter() - started, 2)
    log.info("Loaded %d rows into %s in %.1f s", rows, staging, seconds)
    return LoadedScores.extending(staged, seconds={**staged.seconds, "load": seconds}, staging_table=staging)


def publish_scores(spec: UseCaseSpec, settings: Settings, checked: CheckedScores) -> PublishedScores:
    """Swap the staging table in as D's rows (one transaction), export to S3 if configured, clean up."""
    from batchml.storage import remove_tree

    started = time.perf_counter()
    wh.publish_partition(wh.engine(settings.warehouse_url), spec.score_table, checked.staging_table, checked.as_of)
    seconds = {**checked.seconds, "publish": round(time.perf_counter() - started, 2)}
    exported = export_to_s3(spec, Path(checked.staged_file), checked.as_of) if spec.scoring.export_url else None
    remove_tree(staging_dir(spec, settings, checked.as_of))
    log.info("Published %d rows of %s for %s (%s); timings %s", checked.rows, spec.score_table, checked.as_of,
             ", ".join(f"{role} v{v}" for role, v in checked.roles.items()), seconds)
    return PublishedScores(table=spec.score_table, as_of=checked.as_of, rows=checked.rows, entities=checked.entities,
                           champion=checked.champion, challenger=checked.challenger, exported=exported,
                           data_docs=checked.data_docs, seconds=seconds)


def export_to_s3(spec: UseCaseSpec, staged_file: Path, as_of: dt.date) -> str:
    """Upload D's scores as Parquet to `<export_url>/<table>/dt=D/scores.parquet` (one PUT: replaced on re-run)."""
    from batchml.storage import partition_name, s3_client, split_s3_url

    bucket, prefix = split_s3_url(spec.scoring.export_url)
    key = "/".join(p for p in (prefix, spec.score_table, partition_name(as_of), "scores.parquet") if p)
    s3_client().upload_file(str(staged_file), bucket, key)
    return f"s3://{bucket}/{key}"
