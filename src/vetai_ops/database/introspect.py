"""What is in a database: one place for identifier quoting, table lists, row counts and
database create/drop, so steps, checks and operator verbs ask the same questions the same way.

Quoting is psycopg's ``sql.Identifier``; table and column lists come from SQLAlchemy's
inspector (no hand-written catalog queries)."""

from __future__ import annotations

import contextlib

from psycopg import sql
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine


def _drop(name: str) -> str:
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)).as_string()


def public_tables(conn: Connection) -> list[str]:
    return sorted(inspect(conn).get_table_names(schema="public"))


def public_columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table, schema="public")}


def row_count(conn: Connection, table: str) -> int:
    return conn.exec_driver_sql(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)).as_string()
                                ).scalar_one()


def row_counts(conn: Connection, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    """Exact row count of every public table (but ``exclude``)."""
    return {t: row_count(conn, t) for t in public_tables(conn) if t not in exclude}


def estimated_rows(conn: Connection) -> dict[str, int]:
    """Planner estimates (pg_class.reltuples) per public table: cheap, for manifests."""
    return dict(conn.execute(text(
        "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
    )).all())


def drop_database(maint: Engine, name: str) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE) through an AUTOCOMMIT maintenance engine."""
    with maint.connect() as c:
        c.exec_driver_sql(_drop(name))


@contextlib.contextmanager
def new_database(maint: Engine, name: str, props: dict | None = None):
    """A new empty database ``name`` (a leftover of that name is dropped first, in the same
    session); with ``props`` (database/dbprops.py) from template0 with their encoding and
    locale. Dropped again if the block fails, kept if it succeeds."""
    from .dbprops import create_statement

    with maint.connect() as c:
        c.exec_driver_sql(_drop(name))
        c.exec_driver_sql(create_statement(name, props).as_string())
    try:
        yield name
    except BaseException:
        with contextlib.suppress(Exception):  # the original failure matters more
            drop_database(maint, name)
        raise
