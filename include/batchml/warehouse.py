"""The SQL warehouse analysts read: engines, versioned schema migrations, bulk loads and atomic per-date swaps.

Through SQLAlchemy, so the same code writes a SQLite file (embedded default) or PostgreSQL (the real one). Tables
and statements are built with SQLAlchemy Core, which quotes every identifier the dialect needs quoted (reserved
words such as `order` or `group`, mixed case); the few statements Core has no construct for (views, partition
swaps, comments) quote their identifiers with the dialect's own preparer. Table names derived from specs are also
checked against a strict pattern, so that partition and staging names derived from them stay valid.

What each table means belongs to the module that writes it: the score table to `score_table`, the monitoring table
to `monitoring`, the registry events to `registry`. The schema is created and migrated by the pipelines
themselves, idempotently: each migration has a version recorded in `batchml_schema_migrations`, runs once inside a
transaction, and is checked once per process and engine.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from batchml.errors import BatchMLError

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names; SQLite has no limit
MIGRATIONS_TABLE = "batchml_schema_migrations"


class WarehouseError(BatchMLError):
    """The warehouse is unreachable, or a write to it failed (nothing was committed)."""


def check_identifier(name: str, what: str = "table name") -> str:
    """Refuse table names other than lower-case letters, digits and underscores (partition and staging table names
    are derived from them and must stay valid and short)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise WarehouseError(f"{what} {name!r} is not a valid identifier (lower-case letters, digits, underscores)")
    return name


def quote(bind, name: str) -> str:
    """`name` quoted as the dialect of `bind` (an engine or connection) requires."""
    return bind.dialect.identifier_preparer.quote(name)


# Engines ---------------------------------------------------------------------------------------------------------

_engines: dict[str, object] = {}
_engines_lock = threading.Lock()


def create_engine(url: str):
    """A new SQLAlchemy engine for `url` (the caller disposes it); SQLite gets a busy timeout so that parallel
    tasks wait for each other instead of failing."""
    import sqlalchemy as sa

    kwargs: dict = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        return sa.create_engine(url, **kwargs)
    except (ImportError, sa.exc.NoSuchModuleError, sa.exc.ArgumentError) as exc:
        raise WarehouseError(f"BATCHML_WAREHOUSE_URL: cannot use {_safe(url)} ({exc}); install its driver or fix "
                             "the URL (e.g. postgresql+psycopg://user@host:5432/db)") from None


def engine(url: str):
    """The process's shared engine for `url` (one connection pool per warehouse, disposed at exit)."""
    with _engines_lock:
        if url not in _engines:
            _engines[url] = create_engine(url)
        return _engines[url]


@atexit.register
def _dispose_engines() -> None:
    for eng in _engines.values():
        eng.dispose()
    _engines.clear()


def _safe(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as the scheme only
        return url.split("://", 1)[0] + "://..."


def describe(eng) -> str:
    return eng.url.render_as_string(hide_password=True)


def ping(eng) -> None:
    """Fail with a clear message when the warehouse cannot be reached."""
    import sqlalchemy as sa

    try:
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(
            f"cannot reach the warehouse at {describe(eng)}: "
            f"{exc.__class__.__name__}: {' '.join(str(getattr(exc, 'orig', None) or exc).split())[:300]}. "
            "Check BATCHML_WAREHOUSE_URL and that the database is up."
        ) from None


def table_names(eng) -> list[str]:
    import sqlalchemy as sa

    return sa.inspect(eng).get_table_names()


# Migrations ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One versioned schema change. `key` groups versions (one key per table family, e.g. `registry_events`)."""

    key: str
    version: int
    description: str
    apply: Callable  # (connection) -> None


def _migrations_table(metadata):
    import sqlalchemy as sa

    return sa.Table(
        MIGRATIONS_TABLE, metadata,
        sa.Column("migration_key", sa.String(127), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("applied_at", sa.DateTime, nullable=False),
    )


_applied: set[tuple[str, str, int]] = set()  # (engine url, key, version) checked in this process


def migrate(eng, migrations: list[Migration]) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; returns what was applied."""
    import sqlalchemy as sa

    url = str(eng.url)
    todo = [m for m in sorted(migrations, key=lambda m: (m.key, m.version)) if (url, m.key, m.version) not in _applied]
    if not todo:
        return []
    applied: list[str] = []
    history = _migrations_table(sa.MetaData())
    try:
        history.create(eng, checkfirst=True)
        for m in todo:
            with eng.begin() as conn:
                if eng.dialect.name == "postgresql":  # one migrator at a time; others wait, then see it done
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(m.key))))
                done = conn.execute(sa.select(history.c.version).where(
                    history.c.migration_key == m.key, history.c.version == m.version)).first()
                if not done:
                    m.apply(conn)
                    conn.execute(history.insert().values(
                        migration_key=m.key, version=m.version, description=m.description,
                        applied_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
                    applied.append(f"{m.key} v{m.version}: {m.description}")
            _applied.add((url, m.key, m.version))
    except sa.exc.OperationalError as exc:
        raise WarehouseError(
            f"cannot migrate the warehouse at {describe(eng)}: {' '.join(str(exc.orig).split())[:300]}. "
            "Check BATCHML_WAREHOUSE_URL and that the database is up."
        ) from None
    for line in applied:
        log.info("Warehouse migration applied: %s", line)
    return applied


def create_view(conn, name: str, select) -> None:
    """CREATE VIEW `name` AS `select` (a Core select, compiled with its literals for this dialect)."""
    import sqlalchemy as sa

    body = select.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    conn.execute(sa.text(f"CREATE VIEW {quote(conn, name)} AS {body}"))


def comment_on(conn, kind: str, name: str, text: str) -> None:
    """COMMENT ON VIEW (PostgreSQL; tables and columns get theirs from Core's `comment=`)."""
    import sqlalchemy as sa

    if conn.dialect.name == "postgresql":
        literal = sa.literal(text).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        conn.execute(sa.text(f"COMMENT ON {kind} {quote(conn, name)} IS {literal}"))


# Bulk loads and swaps ----------------------------------------------------------------------------------------------


def reflect(eng, name: str):
    import sqlalchemy as sa

    return sa.Table(name, sa.MetaData(), autoload_with=eng)


def count_rows(eng, name: str) -> int:
    import sqlalchemy as sa

    with eng.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar())


def drop_table(eng, name: str) -> None:
    import sqlalchemy as sa

    sa.Table(check_identifier(name), sa.MetaData()).drop(eng, checkfirst=True)


def bulk_load(eng, table: str, batches, schema) -> int:
    """Append Arrow record batches to `table` and return the row count.

    PostgreSQL: binary COPY through the ADBC driver (streamed, no per-row Python work; ADBC quotes the names).
    SQLite: executemany of a Core INSERT, one transaction per batch.
    """
    import pyarrow as pa

    check_identifier(table)
    rows = 0
    if eng.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi as adbc

        uri = _adbc_uri(eng)

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
    import sqlalchemy as sa

    target = sa.table(table, *[sa.column(n) for n in schema.names])
    insert = str(target.insert().compile(dialect=eng.dialect, column_keys=schema.names))
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        for batch in batches:
            columns = [_sqlite_values(batch.column(i)) for i in range(batch.num_columns)]
            # positional parameters in column order: the compiled INSERT names every column, quoted
            cur.executemany(insert, list(zip(*columns, strict=True)))
            rows += batch.num_rows
            raw.commit()
    finally:
        raw.close()
    return rows


def _adbc_uri(eng) -> str:
    """The engine's PostgreSQL URL as libpq takes it (the ADBC driver has no SQLAlchemy driver suffix)."""
    return eng.url.set(drivername="postgresql").render_as_string(hide_password=False)


def read_frame(eng, query):
    """The rows of a SQLAlchemy select as a DataFrame. PostgreSQL: through the ADBC driver, as Arrow (binary protocol,
    no Python object per value: a day's million scores for monitoring); other warehouses: `pandas.read_sql`. The
    query's values are rendered into its text, so its columns carry their types (`sa.column(name, sa.Date)`)."""
    import pandas as pd

    if eng.dialect.name == "postgresql":
        try:
            import adbc_driver_postgresql.dbapi as adbc
        except ImportError:  # the postgres extra without the ADBC driver: the generic path below
            adbc = None
        if adbc is not None:
            sql = str(query.compile(dialect=eng.dialect, compile_kwargs={"literal_binds": True}))
            with adbc.connect(_adbc_uri(eng)) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetch_arrow_table().to_pandas()
    with eng.connect() as conn:
        return pd.read_sql(query, conn)


def _sqlite_values(array) -> list:
    import pyarrow as pa

    if pa.types.is_timestamp(array.type):
        return [None if v is None else v.strftime("%Y-%m-%d %H:%M:%S.%f") for v in array.to_pylist()]
    if pa.types.is_date(array.type):
        return [None if v is None else v.isoformat() for v in array.to_pylist()]
    return array.to_pylist()


def partition_name(table: str, day: dt.date) -> str:
    return check_identifier(f"{table}_p{day:%Y%m%d}")


def publish_partition(eng, table: str, staging: str, day: dt.date, day_column: str = "as_of_date") -> None:
    """Replace `day`'s rows of `table` by the staging table's, atomically.

    PostgreSQL: the staging table becomes the partition for `day` (detach + attach in one transaction: a metadata
    swap, no row copy). SQLite: delete + insert-select in one transaction. Readers see the old rows or the new
    ones, never a mix; on any error nothing changes.
    """
    import sqlalchemy as sa

    check_identifier(table)
    check_identifier(staging)
    partition = partition_name(table, day)
    q = lambda name: quote(eng, name)  # noqa: E731
    try:
        if eng.dialect.name == "postgresql":
            target = reflect(eng, table)
            pk_cols = ", ".join(q(c.name) for c in target.primary_key.columns)
            literal = sa.literal(day, sa.Date).compile(dialect=eng.dialect, compile_kwargs={"literal_binds": True})
            if not reflect(eng, staging).primary_key.columns:  # validation (add_primary_key) usually built it
                # the key first, so that ATTACH does not build an index while it holds its lock
                _add_key(eng, q(staging), pk_cols)
            with eng.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
                exists = conn.execute(sa.select(sa.func.to_regclass(partition))).scalar()
                if exists:
                    conn.execute(sa.text(f"ALTER TABLE {q(table)} DETACH PARTITION {q(partition)}"))
                    conn.execute(sa.text(f"DROP TABLE {q(partition)}"))
                conn.execute(sa.text(f"ALTER TABLE {q(staging)} RENAME TO {q(partition)}"))
                conn.execute(sa.text(f"ALTER TABLE {q(table)} ATTACH PARTITION {q(partition)} "
                                     f"FOR VALUES IN ({literal})"))
        else:
            target, source = sa.table(table, sa.column(day_column)), reflect(eng, staging)
            with eng.begin() as conn:
                conn.execute(target.delete().where(target.c[day_column] == day.isoformat()))
                conn.execute(sa.table(table, *[sa.column(c.name) for c in source.columns]).insert().from_select(
                    [c.name for c in source.columns], sa.select(source)))
                source.drop(conn)
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(f"publishing {table} for {day} failed, previous rows are intact: {exc}") from exc


def add_primary_key(eng, staging: str, table: str) -> dict | None:
    """PostgreSQL: give a staging table `table`'s primary key (which its partition needs anyway). Building the index
    is also the fastest proof that no key repeats (a GX uniqueness query over a million rows took 5 s; the index
    0.5 s). Returns None, or the duplicated keys as a failed uniqueness expectation (table left without a key)."""
    import sqlalchemy as sa

    check_identifier(staging)
    q = lambda name: quote(eng, name)  # noqa: E731
    columns = [c.name for c in reflect(eng, table).primary_key.columns]
    cols = ", ".join(q(c) for c in columns)
    try:
        _add_key(eng, q(staging), cols)
        return None
    except sa.exc.IntegrityError:
        with eng.connect() as conn:
            dupes = conn.execute(sa.text(f"SELECT {cols}, COUNT(*) AS n FROM {q(staging)} GROUP BY {cols} "
                                         "HAVING COUNT(*) > 1 ORDER BY n DESC")).fetchall()
            rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {q(staging)}")).scalar()
        if not dupes:  # key columns are NOT NULL in a staging table: a repeat is the only way to get here
            raise
        unexpected = sum(d[-1] for d in dupes)
        return {"expectation": "expect_compound_columns_to_be_unique", "column": None,
                "kwargs": {"column_list": columns}, "unexpected_count": unexpected,
                "unexpected_percent": 100.0 * unexpected / max(rows, 1),
                "partial_unexpected_list": [{c: str(v) for c, v in zip(columns, d[:-1], strict=True)} for d in dupes[:5]]}


def _add_key(eng, quoted_table: str, quoted_columns: str) -> None:
    import sqlalchemy as sa

    with eng.begin() as conn:
        # the index build sorts every key: in memory (not spilled to disk) up to millions of rows
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
        conn.execute(sa.text(f"ALTER TABLE {quoted_table} ADD PRIMARY KEY ({quoted_columns})"))


def staging_name(table: str, day: dt.date, run_label: str) -> str:
    """The staging table of one scoring run: `<table>_s<YYYYMMDD>_<hash of the run>`."""
    import hashlib

    return check_identifier(f"{table}_s{day:%Y%m%d}_{hashlib.sha1(run_label.encode()).hexdigest()[:8]}")


def drop_stale_staging(eng, table: str, day: dt.date) -> list[str]:
    """Drop the staging tables of `table` for `day` that earlier runs left behind (a killed run cannot clean up
    after itself); other days' staging tables may belong to runs in progress and are left alone."""
    prefix = f"{check_identifier(table)}_s{day:%Y%m%d}_"
    stale = [n for n in table_names(eng) if n.startswith(prefix) and re.fullmatch(r"[0-9a-f]{8}", n[len(prefix):])]
    for name in stale:
        drop_table(eng, name)
    if stale:
        log.info("Dropped %d stale staging table(s) of %s: %s", len(stale), table, stale)
    return stale
