"""The stack's PostgreSQL (batchml.localpg, durable): started or reused, its roles, databases and grants applied on
every `up`, and its health (each role logs in with its password)."""

from __future__ import annotations

from batchml.stack.processes import pid
from batchml.stack.state import ANALYST_ROLE, DATABASE_OWNERS, PG_ROLES, StackState


def server(stack: StackState):
    """The stack's server (batchml.localpg.LocalPostgres); starting it reuses the data folder."""
    from batchml.localpg import LocalPostgres

    return LocalPostgres(stack.postgres_dir, database="postgres", port=stack.ports.get("postgres"),
                         password=stack.secret.get("pg_superuser"), durable=True,
                         settings={"max_connections": "150", "shared_buffers": "128MB", "max_wal_size": "1GB"})


def start(stack: StackState) -> None:
    """Start the server unless it runs, then provision it (blocks until it accepts connections)."""
    pg = server(stack)
    if pid(stack, "postgres") is None:
        (pg.data / "postmaster.pid").unlink(missing_ok=True)  # stale after a crash: pg_ctl would wait on it
        pg.start()
    provision(stack, pg)


def provision(stack: StackState, pg) -> None:
    """Roles with their passwords (re-applied every `up`), one database per owner, the analyst read-only."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg.libpq_url, autocommit=True) as conn:
        for role, (_, secret) in PG_ROLES.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(stack.secret[secret])))
        for database, owner in DATABASE_OWNERS.items():
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(owner)))
            # only the roles meant for a database may connect to it; nobody but its owner creates objects
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
            users = [owner] + ([ANALYST_ROLE] if database == "warehouse" else [])
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.SQL(", ").join(map(sql.Identifier, users))))
        for database in ("postgres", "template1"):  # the superuser's; the roles have nothing to do there
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
            sql.Identifier(ANALYST_ROLE)))


def health(stack: StackState) -> tuple[bool, str]:
    import psycopg

    for role in PG_ROLES:
        with psycopg.connect(stack.pg_url(role, "postgresql"), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    return True, f"roles {', '.join(PG_ROLES)} log in with their passwords"
