"""What is in a database: one place for identifier quoting, table lists, row counts and
database create/drop, so steps, checks and operator verbs ask the same questions the same way.

Quoting is psycopg's ``sql.Identifier``; table and column lists are read from the catalog
(the app's tables: ``relkind`` r and p, partitions included, as SQLAlchemy's inspector listed
them: a manifest's tables (``estimated_rows``) count partitions, and a restored copy is
checked against them; ``catalog.py``'s snapshot query leaves partitions out on purpose, since
drift is judged on their parents. Both are one query each, not SQLAlchemy's inspector, so a
restore needs no SQLAlchemy import). Connections are
psycopg's (a SQLAlchemy one works too: its driver connection is used); ``maint`` opens an
autocommit connection to the maintenance database (``access.admin``)."""

from __future__ import annotations

import contextlib

from typing import Callable

from psycopg import sql

from .catalog import driver_connection
from .pg import column, scalar

_TABLES = ("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
           " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1")
_COLUMNS = ("SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = %(t)s"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped")


def _drop(name: str) -> sql.Composed:
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))


def public_tables(conn) -> list[str]:
    return sorted(column(conn, _TABLES))


def public_columns(conn, table: str) -> set[str]:
    return set(column(conn, _COLUMNS, {"t": table}))


def row_count(conn, table: str) -> int:
    return scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)))


def row_counts(conn, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    """Exact row count of every public table (but ``exclude``)."""
    return {t: row_count(conn, t) for t in public_tables(conn) if t not in exclude}


def estimated_rows(conn) -> dict[str, int]:
    """Planner estimates (pg_class.reltuples) per public table: cheap, for manifests."""
    return dict(driver_connection(conn).execute(
        "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
    ).fetchall())


def drop_database(maint: Callable, name: str) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE) on an autocommit maintenance connection."""
    with maint() as c:
        c.execute(_drop(name))


@contextlib.contextmanager
def new_database(maint: Callable, name: str, props: dict | None = None):
    """A new empty database ``name`` (a leftover of that name is dropped first, in the same
    session); with ``props`` (database/dbprops.py) from template0 with their encoding and
    locale. Dropped again if the block fails, kept if it succeeds."""
    from .dbprops import create_statement

    with maint() as c:
        c.execute(_drop(name))
        c.execute(create_statement(name, props))
    try:
        yield name
    except BaseException:
        with contextlib.suppress(Exception):  # the original failure matters more
            drop_database(maint, name)
        raise
