"""Three answers of a query on a psycopg 3 connection: the first value, the first column, the
rows as dicts. Parameters are bound (``%(name)s``; a literal ``%`` is ``%%`` then);
identifiers come composed with ``psycopg.sql``. A SQLAlchemy connection (Alembic's, in a
migrate) is accepted too: its driver connection is used (:func:`.catalog.driver_connection`),
inside that connection's transaction."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from .catalog import driver_connection


def scalar(conn, query, params: Any = None) -> Any:
    """The first value of the first row (None without a row)."""
    row = driver_connection(conn).execute(query, params).fetchone()
    return row[0] if row else None


def column(conn, query, params: Any = None) -> list:
    """The first value of every row."""
    return [r[0] for r in driver_connection(conn).execute(query, params).fetchall()]


def dicts(conn, query, params: Any = None) -> list[dict]:
    """Every row as a dict (column name -> value)."""
    with driver_connection(conn).cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()
