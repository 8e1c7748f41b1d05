"""TypeORM's journal of applied migrations, read the way TypeORM reads it.

TypeORM records each applied migration as a row (``id`` serial, ``timestamp`` bigint ms,
``name`` = class name) of a table called ``migrations`` unless the project set
``migrationsTableName`` in its DataSource. ``invoke adopt --table=NAME`` reads such a
table; the name is checked as a plain identifier and quoted by psycopg, never pasted
into SQL. Rows come ordered by ``timestamp`` (then ``id``), as TypeORM orders them.

After ``adopt`` the journal stays where it is (the backend may still read it), so a
table with a custom name is marked with a comment (:data:`JOURNAL_COMMENT`): the
post-check and the schema comparisons leave marked tables out, as they leave out
``migrations`` itself (:func:`journal_tables`).
"""

from __future__ import annotations

import re

from typing import TYPE_CHECKING

from psycopg import sql

if TYPE_CHECKING:  # adopt and Alembic's autogenerate hand SQLAlchemy connections (imported there)
    from sqlalchemy.engine import Connection

from ..errors import GateRefused

DEFAULT_TABLE = "migrations"
JOURNAL_COMMENT = "vetai-ops: TypeORM migrations journal, adopted; not part of the app schema"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_MAX_IDENT = 63  # PostgreSQL's NAMEDATALEN - 1


def check_table_name(name: str | None) -> str:
    """``name`` when it is a plain PostgreSQL identifier (TypeORM's ``migrationsTableName``)."""
    name = DEFAULT_TABLE if name is None else name
    if not isinstance(name, str) or not _IDENT.fullmatch(name) or len(name) > _MAX_IDENT:
        raise GateRefused(
            f"--table={name!r} is not a table name: letters, digits, _ and $, not starting with a digit, "
            f"at most {_MAX_IDENT} characters; nothing changed",
            "pass the value of migrationsTableName from the backend's DataSource (default: migrations)",
        )
    return name


def _qualified(table: str) -> sql.Composed:
    return sql.Identifier("public", table)


def read_typeorm(conn: Connection, table: str = DEFAULT_TABLE) -> list[dict]:
    """Rows of TypeORM's journal ``public.<table>``, ordered by timestamp as TypeORM does.

    GateRefused (nothing read, nothing changed) when the table is absent or does not
    have TypeORM's columns.
    """
    from sqlalchemy import text

    table = check_table_name(table)
    cols = set(conn.execute(text(
        "select column_name from information_schema.columns where table_schema = 'public' and table_name = :t"
    ), {"t": table}).scalars())
    if not cols:
        hint = ("for an empty database run `invoke deploy`; if the backend sets migrationsTableName, "
                "pass it as --table=NAME")
        raise GateRefused(
            f"the database has no TypeORM {table!r} table: it was not built by the backend's TypeORM migrations "
            "(or they were journaled under another name); nothing changed", hint)
    if not {"id", "timestamp", "name"} <= cols:
        raise GateRefused(
            f"table {table!r} has columns {', '.join(sorted(cols))}; TypeORM's has id, timestamp, name; nothing changed",
            "this is not TypeORM's migrations table; adopt cannot tell which state the schema is in",
        )
    stmt = sql.SQL('SELECT id, "timestamp", name FROM {} ORDER BY "timestamp", id').format(_qualified(table))
    return [dict(r) for r in conn.exec_driver_sql(stmt.as_string()).mappings()]


def mark_journal(conn: Connection, table: str) -> None:
    """Comment ``table`` as TypeORM's adopted journal (left out of schema comparisons)."""
    stmt = sql.SQL("COMMENT ON TABLE {} IS {}").format(_qualified(check_table_name(table)),
                                                        sql.Literal(JOURNAL_COMMENT))
    conn.exec_driver_sql(stmt.as_string())


def journal_tables(conn: Connection) -> set[str]:
    """Public tables marked by :func:`mark_journal` (a TypeORM journal with a custom name)."""
    from sqlalchemy import text

    return set(conn.execute(text(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and c.relkind in ('r', 'p') and obj_description(c.oid, 'pg_class') = :m"
    ), {"m": JOURNAL_COMMENT}).scalars())
