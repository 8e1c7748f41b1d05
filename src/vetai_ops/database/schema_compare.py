"""Read TypeORM's ``migrations`` table: which of the guide's migrations a database built by
the backend's TypeORM has applied (``invoke adopt``). The schema comparison adopt also
needs lives in :mod:`vetai_ops.database.catalog` (snapshot, compare) and
:mod:`vetai_ops.database.reference` (the schema the history builds at a revision)."""

from __future__ import annotations

from sqlalchemy import text

from ..errors import GateRefused


def read_typeorm(conn) -> list[dict]:
    """Rows of TypeORM's ``migrations`` table, oldest first; GateRefused when absent or malformed."""
    if not conn.execute(text("select to_regclass('public.migrations')")).scalar():
        raise GateRefused(
            "the database has no TypeORM 'migrations' table: it was not built by the backend's TypeORM migrations",
            "for an empty database run `invoke deploy`; otherwise create the schema's history by hand",
        )
    cols = set(conn.execute(text(
        "select column_name from information_schema.columns where table_schema = 'public' and table_name = 'migrations'"
    )).scalars())
    if not {"id", "timestamp", "name"} <= cols:
        raise GateRefused(f"table 'migrations' has columns {', '.join(sorted(cols))}; TypeORM's has id, timestamp, name",
                          "this is not TypeORM's migrations table; adopt cannot tell which state the schema is in")
    return [dict(r) for r in conn.execute(text('select id, "timestamp", name from migrations order by id')).mappings()]
