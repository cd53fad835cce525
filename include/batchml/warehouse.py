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
            f"{exc.__class__.__name__}: {str(exc.orig if hasattr(exc, 'orig') else exc).strip()[:300]}. "
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
            f"cannot migrate the warehouse at {engine.url.render_as_string(hide_password=True)}: {exc.orig}. "
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
