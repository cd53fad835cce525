"""The SQL warehouse analysts read: engine, versioned schema migrations, and the small tables the pipelines write.

Through SQLAlchemy, so the same code writes a SQLite file (embedded default) or PostgreSQL (the real one). The schema
is created and migrated by the pipelines themselves, idempotently: each migration has a version recorded in
`batchml_schema_migrations` and runs once, inside a transaction.

Identifiers that come from specs (table names) are validated against a strict pattern *and* quoted by the dialect:
nothing from a spec is ever pasted into SQL text unquoted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from batchml.errors import BatchMLError

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MIGRATIONS_TABLE = "batchml_schema_migrations"
REGISTRY_EVENTS_TABLE = "model_registry_events"


class WarehouseError(BatchMLError):
    """The warehouse is unreachable, or a write to it failed (nothing was committed)."""


def check_identifier(name: str, what: str = "table name") -> str:
    """Refuse anything but lower-case letters, digits and underscores (no quoting tricks, no injection)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise WarehouseError(f"{what} {name!r} is not a valid identifier (lower-case letters, digits, underscores)")
    return name


def create_engine(url: str):
    """A SQLAlchemy engine for `url`; SQLite gets a busy timeout so parallel tasks wait instead of failing."""
    import sqlalchemy as sa

    kwargs: dict = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    else:
        kwargs["pool_pre_ping"] = True
    return sa.create_engine(url, **kwargs)


def ping(engine) -> None:
    """Fail with a clear message when the warehouse cannot be reached."""
    import sqlalchemy as sa

    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(
            f"cannot reach the warehouse at {engine.url.render_as_string(hide_password=True)}: "
            f"{exc.__class__.__name__}: {' '.join(str(getattr(exc, 'orig', None) or exc).split())[:300]}. "
            "Check BATCHML_WAREHOUSE_URL and that the database is up."
        ) from None


# Migrations ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One versioned schema change. `key` groups versions (one key per table family, e.g. `registry_events`)."""

    key: str
    version: int
    description: str
    apply: Callable  # (connection, dialect_name) -> None


def _registry_events_v1(conn, dialect: str) -> None:
    import sqlalchemy as sa

    serial = "BIGSERIAL PRIMARY KEY" if dialect == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
    conn.execute(
        sa.text(
            f"""
            CREATE TABLE IF NOT EXISTS {REGISTRY_EVENTS_TABLE} (
                event_id {serial},
                use_case VARCHAR(63) NOT NULL,
                model_name VARCHAR(255) NOT NULL,
                model_version INTEGER,
                event VARCHAR(32) NOT NULL,
                previous_champion INTEGER,
                reasons TEXT NOT NULL,
                metrics TEXT NOT NULL,
                actor VARCHAR(255) NOT NULL,
                airflow_run_id VARCHAR(255),
                mlflow_run_id VARCHAR(64),
                recorded_at TIMESTAMP NOT NULL
            )"""
        )
    )
    conn.execute(
        sa.text(
            f"CREATE INDEX IF NOT EXISTS ix_{REGISTRY_EVENTS_TABLE}_model "
            f"ON {REGISTRY_EVENTS_TABLE} (model_name, recorded_at)"
        )
    )
    if dialect == "postgresql":
        conn.execute(
            sa.text(
                f"COMMENT ON TABLE {REGISTRY_EVENTS_TABLE} IS "
                "'Every model registration and alias change (champion/challenger gate, promotions, rollbacks), "
                "with its reasons and metrics (JSON).'"
            )
        )


CORE_MIGRATIONS = [Migration("registry_events", 1, "model registry events table", _registry_events_v1)]


def _ensure_migrations_table(conn) -> None:
    import sqlalchemy as sa

    conn.execute(
        sa.text(
            f"""
            CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                migration_key VARCHAR(127) NOT NULL,
                version INTEGER NOT NULL,
                description VARCHAR(255) NOT NULL,
                applied_at TIMESTAMP NOT NULL,
                PRIMARY KEY (migration_key, version)
            )"""
        )
    )


def migrate(engine, migrations: list[Migration] | None = None) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; returns what was applied."""
    import sqlalchemy as sa

    migrations = CORE_MIGRATIONS if migrations is None else migrations
    applied: list[str] = []
    dialect = engine.dialect.name
    try:
        with engine.begin() as conn:
            _ensure_migrations_table(conn)
        for m in sorted(migrations, key=lambda m: (m.key, m.version)):
            with engine.begin() as conn:
                if dialect == "postgresql":  # one migrator at a time; others wait, then see it done
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": m.key})
                done = conn.execute(
                    sa.text(f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE migration_key = :k AND version = :v"),
                    {"k": m.key, "v": m.version},
                ).first()
                if done:
                    continue
                m.apply(conn, dialect)
                conn.execute(
                    sa.text(
                        f"INSERT INTO {MIGRATIONS_TABLE} (migration_key, version, description, applied_at) "
                        "VALUES (:k, :v, :d, :t)"
                    ),
                    {"k": m.key, "v": m.version, "d": m.description, "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
                )
                applied.append(f"{m.key} v{m.version}: {m.description}")
    except sa.exc.OperationalError as exc:
        raise WarehouseError(
            f"cannot migrate the warehouse at {engine.url.render_as_string(hide_password=True)}: "
            f"{' '.join(str(exc.orig).split())[:300]}. "
            "Check BATCHML_WAREHOUSE_URL and that the database is up."
        ) from None
    for line in applied:
        log.info("Warehouse migration applied: %s", line)
    return applied


# Registry events -------------------------------------------------------------------------------------------------


def record_registry_event(
    engine,
    *,
    use_case: str,
    model_name: str,
    model_version: int | None,
    event: str,
    reasons: list[str],
    metrics: dict | None = None,
    previous_champion: int | None = None,
    actor: str = "airflow",
    airflow_run_id: str | None = None,
    mlflow_run_id: str | None = None,
) -> None:
    """Append one registry event (registered, promoted, challenger, rejected, rolled_back, ...)."""
    import sqlalchemy as sa

    migrate(engine)
    row = {
        "use_case": use_case,
        "model_name": model_name,
        "model_version": model_version,
        "event": event,
        "previous_champion": previous_champion,
        "reasons": json.dumps(reasons),
        "metrics": json.dumps(metrics or {}, default=float),
        "actor": actor,
        "airflow_run_id": airflow_run_id,
        "mlflow_run_id": mlflow_run_id,
        "recorded_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }
    columns = ", ".join(row)
    values = ", ".join(f":{k}" for k in row)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {REGISTRY_EVENTS_TABLE} ({columns}) VALUES ({values})"), row)


def registry_events(engine, model_name: str) -> list[dict]:
    """Registry events of one model, oldest first, with reasons and metrics decoded."""
    import sqlalchemy as sa

    migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT * FROM {REGISTRY_EVENTS_TABLE} WHERE model_name = :m ORDER BY event_id"),
            {"m": model_name},
        ).mappings()
        out = []
        for r in rows:
            item = dict(r)
            item["reasons"] = json.loads(item["reasons"])
            item["metrics"] = json.loads(item["metrics"])
            out.append(item)
    return out


# Score tables ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreColumn:
    name: str
    arrow: str  # pyarrow type name: string, date32, float64, int16, int32, bool, timestamp
    pg: str
    sqlite: str
    nullable: bool
    comment: str


def score_columns(entity_key: str, reasons: int, carried: dict[str, str] | None = None) -> list[ScoreColumn]:
    """The columns of a use case's score table, in order (the Arrow batches written by scoring match them).

    `carried`: feature columns copied from the feature table, name -> feature kind (categorical or numeric).
    """
    check_identifier(entity_key, "entity key")
    cols = [
        ScoreColumn(entity_key, "string", "TEXT", "TEXT", False, "Entity scored."),
        ScoreColumn("as_of_date", "date32", "DATE", "DATE", False,
                    "Date the score is for: features use data strictly before this date (00:00 UTC)."),
        ScoreColumn("model_role", "string", "VARCHAR(16)", "VARCHAR(16)", False,
                    "champion (the model in use) or challenger (shadow scores, for comparison only)."),
        ScoreColumn("score", "float64", "DOUBLE PRECISION", "REAL", False, "Probability of the label (0 to 1)."),
        ScoreColumn("risk_decile", "int16", "SMALLINT", "SMALLINT", False,
                    "Decile of the score among this date's rows of the same model: 1 = the highest 10%."),
        ScoreColumn("risk_band", "string", "VARCHAR(32)", "VARCHAR(32)", False,
                    "Band from the spec's thresholds (e.g. high, medium, low)."),
    ]
    for i in range(1, reasons + 1):
        cols += [
            ScoreColumn(f"reason_{i}", "string", "TEXT", "TEXT", True,
                        f"Feature with the {_ordinal(i)} largest contribution to the score (SHAP)."),
            ScoreColumn(f"reason_{i}_value", "string", "TEXT", "TEXT", True, f"Value of reason_{i} for this entity."),
            ScoreColumn(f"reason_{i}_impact", "float64", "DOUBLE PRECISION", "REAL", True,
                        f"Contribution of reason_{i} to the log-odds of the score (positive raises the risk)."),
        ]
    for name, kind in (carried or {}).items():
        check_identifier(name.lower(), "carried column")
        if kind == "categorical":
            cols.append(ScoreColumn(name, "string", "TEXT", "TEXT", False, f"Feature {name}, copied for grouping."))
        else:
            cols.append(ScoreColumn(name, "float64", "DOUBLE PRECISION", "REAL", False, f"Feature {name} as scored."))
    cols += [
        ScoreColumn("reasons_exact", "bool", "BOOLEAN", "BOOLEAN", False,
                    "True: exact TreeSHAP reason codes; false: approximate (Saabas) or none (see the README)."),
        ScoreColumn("model_name", "string", "TEXT", "TEXT", False, "Registered MLflow model name."),
        ScoreColumn("model_version", "int32", "INTEGER", "INTEGER", False,
                    "MLflow model version, pinned once per scoring run."),
        ScoreColumn("airflow_run_id", "string", "TEXT", "TEXT", False, "Airflow run that wrote the row."),
        ScoreColumn("scored_at", "timestamp", "TIMESTAMPTZ", "TIMESTAMP", False, "When the row was scored (UTC)."),
    ]
    return cols


def _ordinal(i: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(i, f"{i}th")


def arrow_schema(columns: list[ScoreColumn]):
    import pyarrow as pa

    types = {"string": pa.string(), "date32": pa.date32(), "float64": pa.float64(), "int16": pa.int16(),
             "int32": pa.int32(), "bool": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(c.name, types[c.arrow], nullable=c.nullable) for c in columns])


def _ddl_columns(columns: list[ScoreColumn], dialect: str) -> str:
    return ", ".join(
        f"{c.name} {c.pg if dialect == 'postgresql' else c.sqlite}{'' if c.nullable else ' NOT NULL'}" for c in columns
    )


def score_table_migrations(table: str, columns: list[ScoreColumn]) -> list[Migration]:
    """Versioned DDL of one score table, its views and (PostgreSQL) comments."""
    import sqlalchemy as sa

    check_identifier(table)
    if len(table) > 45:
        raise WarehouseError(f"table name {table!r} is longer than 45 characters (partition names need the rest)")
    key = columns[0].name

    def v1(conn, dialect: str) -> None:
        # entity first: the key serves lookups and day-over-day joins by entity, and it sorts fast when each
        # date's partition builds it (the other two columns are constant within a partition)
        pk = f"PRIMARY KEY ({key}, model_role, as_of_date)"
        if dialect == "postgresql":
            conn.execute(sa.text(f"CREATE TABLE {table} ({_ddl_columns(columns, dialect)}, {pk}) "
                                 "PARTITION BY LIST (as_of_date)"))
            _comment(conn, f"TABLE {table}",
                     "Batch scores, one row per entity, date and model role. Written by the scoring DAG; each date "
                     f"is replaced atomically. Analysts: use the views {table}_champion and {table}_latest.")
            for c in columns:
                _comment(conn, f"COLUMN {table}.{c.name}", c.comment)
        else:
            conn.execute(sa.text(f"CREATE TABLE {table} ({_ddl_columns(columns, dialect)}, {pk})"))
        if dialect != "postgresql":  # PostgreSQL prunes partitions by date instead
            conn.execute(sa.text(f"CREATE INDEX ix_{table}_day ON {table} (as_of_date)"))
        conn.execute(sa.text(f"CREATE VIEW {table}_champion AS SELECT * FROM {table} WHERE model_role = 'champion'"))
        conn.execute(sa.text(
            f"CREATE VIEW {table}_latest AS SELECT s.* FROM {table} s JOIN "
            f"(SELECT {key}, MAX(as_of_date) AS as_of_date FROM {table} WHERE model_role = 'champion' "
            f"GROUP BY {key}) m ON s.{key} = m.{key} AND s.as_of_date = m.as_of_date "
            "WHERE s.model_role = 'champion'"))
        if dialect == "postgresql":
            _comment(conn, f"VIEW {table}_champion", "Champion scores of every date: the analysts' default view.")
            _comment(conn, f"VIEW {table}_latest", "Each entity's most recent champion score.")

    return [Migration(f"scores:{table}", 1, f"score table {table}, views, comments", v1)]


def _comment(conn, target: str, text: str) -> None:
    """COMMENT ON takes no bind parameters: quote the (package-defined) text as a SQL literal."""
    import sqlalchemy as sa

    conn.execute(sa.text(f"COMMENT ON {target} IS '" + text.replace("'", "''") + "'"))


def ensure_score_table(engine, table: str, columns: list[ScoreColumn]) -> list[str]:
    """Create or migrate the score table; refuse to write into one whose columns differ from the spec's."""
    import sqlalchemy as sa

    applied = migrate(engine, CORE_MIGRATIONS + score_table_migrations(table, columns))
    existing = [c["name"] for c in sa.inspect(engine).get_columns(table)]
    wanted = [c.name for c in columns]
    if existing != wanted:
        raise WarehouseError(
            f"table {table} has columns {existing} but the spec now needs {wanted}; add a migration for the new "
            "columns (see batchml.warehouse.score_table_migrations) or set scoring.table to a new table"
        )
    return applied


def staging_table_name(table: str, day: dt.date, run_label: str) -> str:
    import hashlib

    return check_identifier(f"{table}_s{day:%Y%m%d}_{hashlib.sha1(run_label.encode()).hexdigest()[:8]}")


def create_staging_table(engine, staging: str, columns: list[ScoreColumn], day: dt.date) -> None:
    """An empty table shaped like the score table, keyless (loaded fast, validated, then swapped in), that only
    accepts rows of `day` (on PostgreSQL the same CHECK lets ATTACH PARTITION skip its scan)."""
    import sqlalchemy as sa

    check_identifier(staging)
    day_sql = f"DATE '{day.isoformat()}'" if engine.dialect.name == "postgresql" else f"'{day.isoformat()}'"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {staging}"))
        conn.execute(sa.text(
            f"CREATE TABLE {staging} ({_ddl_columns(columns, engine.dialect.name)}, CONSTRAINT {staging}_day "
            f"CHECK (as_of_date IS NOT NULL AND as_of_date = {day_sql}))"))


def drop_table(engine, name: str) -> None:
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {check_identifier(name)}"))


def bulk_load(engine, table: str, batches, schema) -> int:
    """Append Arrow record batches to `table` and return the row count.

    PostgreSQL: binary COPY through the ADBC driver (streamed, no per-row Python work). SQLite: executemany in
    one transaction per batch.
    """
    import pyarrow as pa

    check_identifier(table)
    rows = 0
    if engine.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi as adbc

        uri = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

        def counted():
            nonlocal rows
            for batch in batches:
                rows += batch.num_rows
                yield batch

        reader = pa.RecordBatchReader.from_batches(schema, counted())
        with adbc.connect(uri) as conn:
            with conn.cursor() as cur:
                cur.adbc_ingest(table, reader, mode="append")
            conn.commit()
        return rows
    names = schema.names
    placeholders = ", ".join("?" for _ in names)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for batch in batches:
            columns = [_sqlite_values(batch.column(i)) for i in range(batch.num_columns)]
            cur.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({placeholders})", zip(*columns, strict=True))
            rows += batch.num_rows
            raw.commit()
    finally:
        raw.close()
    return rows


def _sqlite_values(array) -> list:
    import pyarrow as pa

    if pa.types.is_timestamp(array.type):
        return [None if v is None else v.strftime("%Y-%m-%d %H:%M:%S.%f") for v in array.to_pylist()]
    if pa.types.is_date(array.type):
        return [None if v is None else v.isoformat() for v in array.to_pylist()]
    return array.to_pylist()


def publish_partition(engine, table: str, staging: str, day: dt.date) -> None:
    """Replace `day`'s rows of `table` by the staging table's, atomically.

    PostgreSQL: the staging table becomes the partition for `day` (detach + attach in one transaction: a metadata
    swap, no row copy). SQLite: delete + insert-select in one transaction. Readers see the old rows or the new
    ones, never a mix; on any error nothing changes.
    """
    import sqlalchemy as sa

    check_identifier(table)
    check_identifier(staging)
    partition = check_identifier(f"{table}_p{day:%Y%m%d}")
    try:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                # the key first, so that ATTACH does not build an index while it holds its lock
                pk_cols = ", ".join(_primary_key(conn, table))
                # the index build sorts every key: in memory (not spilled to disk) up to millions of rows
                conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
                conn.execute(sa.text(f"ALTER TABLE {staging} ADD PRIMARY KEY ({pk_cols})"))
            with engine.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
                exists = conn.execute(sa.text("SELECT to_regclass(:p)"), {"p": partition}).scalar()
                if exists:
                    conn.execute(sa.text(f"ALTER TABLE {table} DETACH PARTITION {partition}"))
                    conn.execute(sa.text(f"DROP TABLE {partition}"))
                conn.execute(sa.text(f"ALTER TABLE {staging} RENAME TO {partition}"))
                conn.execute(sa.text(f"ALTER TABLE {table} ATTACH PARTITION {partition} "
                                     f"FOR VALUES IN (DATE '{day.isoformat()}')"))
        else:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DELETE FROM {table} WHERE as_of_date = :d"), {"d": day.isoformat()})
                conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {staging}"))
                conn.execute(sa.text(f"DROP TABLE {staging}"))
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(f"publishing {table} for {day} failed, previous rows are intact: {exc}") from exc


def _primary_key(conn, table: str) -> list[str]:
    import sqlalchemy as sa

    rows = conn.execute(sa.text(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)"),
        {"t": table}).scalars().all()
    return list(rows)


def drop_stale_staging(engine, table: str, day: dt.date) -> list[str]:
    """Drop staging tables that earlier failed runs for `day` left behind."""
    import sqlalchemy as sa

    prefix = f"{check_identifier(table)}_s{day:%Y%m%d}_"
    stale = [n for n in sa.inspect(engine).get_table_names() if n.startswith(prefix)]
    for name in stale:
        drop_table(engine, name)
    return stale


# Monitoring table ------------------------------------------------------------------------------------------------


def monitoring_migrations(table: str) -> list[Migration]:
    import sqlalchemy as sa

    check_identifier(table)

    def v1(conn, dialect: str) -> None:
        double = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
        conn.execute(sa.text(
            f"CREATE TABLE {table} (as_of_date DATE NOT NULL, model_role VARCHAR(16) NOT NULL, "
            f"model_version INTEGER, metric VARCHAR(64) NOT NULL, feature TEXT, value {double}, threshold {double}, "
            "status VARCHAR(16) NOT NULL, detail TEXT, airflow_run_id TEXT, recorded_at TIMESTAMP NOT NULL)"))
        conn.execute(sa.text(f"CREATE INDEX ix_{table}_day ON {table} (as_of_date, metric)"))
        if dialect == "postgresql":
            _comment(conn, f"TABLE {table}",
                     "Monitoring figures per date: feature drift (PSI, KS, chi-square, null and unseen shares), "
                     "prediction drift (score PSI), realized performance on matured labels, retraining decisions. "
                     "status: ok, warn, alert, info, skipped, requested, suppressed.")

    return [Migration(f"monitoring:{table}", 1, f"monitoring table {table}", v1)]


def replace_monitoring_rows(engine, table: str, day: dt.date, rows: list[dict]) -> int:
    """Replace `day`'s monitoring rows in one transaction (a re-run never duplicates them)."""
    import sqlalchemy as sa

    migrate(engine, CORE_MIGRATIONS + monitoring_migrations(table))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    columns = ["as_of_date", "model_role", "model_version", "metric", "feature", "value", "threshold", "status",
               "detail", "airflow_run_id", "recorded_at"]
    payload = [{**{c: r.get(c) for c in columns}, "as_of_date": day, "recorded_at": now} for r in rows]
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {table} WHERE as_of_date = :d"), {"d": day})
        if payload:
            conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                 f"({', '.join(':' + c for c in columns)})"), payload)
    return len(payload)


def last_retrain_request(engine, table: str, before: dt.date) -> dt.date | None:
    """The most recent date before `before` on which monitoring requested a retraining run."""
    import sqlalchemy as sa

    migrate(engine, CORE_MIGRATIONS + monitoring_migrations(table))
    with engine.connect() as conn:
        value = conn.execute(sa.text(
            f"SELECT MAX(as_of_date) FROM {table} WHERE metric = 'retrain_request' AND status = 'requested' "
            "AND as_of_date < :d"), {"d": before}).scalar()
    if value is None:
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def retrain_verdict(engine, table: str, day: dt.date) -> dict | None:
    """The retraining decision monitoring recorded for `day` (status, detail) and the day's count of drift alerts;
    None when monitoring has not run for that day."""
    import sqlalchemy as sa

    check_identifier(table)
    if table not in sa.inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT status, detail FROM {table} "
                                   "WHERE as_of_date = :d AND metric = 'retrain_request'"), {"d": day}).first()
        alerts = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE as_of_date = :d AND status = 'alert'"),
                              {"d": day}).scalar()
    return None if row is None else {"status": row.status, "detail": row.detail, "alerts": int(alerts)}


def read_scores(engine, table: str, key: str, day: dt.date, role: str = "champion"):
    """(entity, score, model_version) of one date and model role, as a DataFrame."""
    import pandas as pd

    check_identifier(table)
    check_identifier(key, "entity key")
    import sqlalchemy as sa

    if table not in sa.inspect(engine).get_table_names():
        return pd.DataFrame(columns=[key, "score", "model_version"])
    return pd.read_sql(sa.text(f"SELECT {key}, score, model_version FROM {table} "
                               "WHERE as_of_date = :d AND model_role = :r"), engine,
                       params={"d": day.isoformat() if engine.dialect.name == "sqlite" else day, "r": role})
