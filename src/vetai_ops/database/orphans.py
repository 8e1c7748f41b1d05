"""Orphan rows for foreign keys that pending revisions add (the guide's LEFT JOIN check).

The foreign keys come from the pending revisions' rendered SQL (Alembic offline mode),
parsed with pglast (PostgreSQL's own parser); each is checked against the live data
before anything runs, so a deploy never fails half-way on "violates foreign key constraint".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from .introspect import public_columns, public_tables, quote_ident


@dataclass
class ForeignKey:
    revision: str
    name: str | None
    table: str
    columns: list[str]
    ref_table: str
    ref_columns: list[str]

    def query(self) -> str:
        q = quote_ident
        on = " AND ".join(f"p.{q(r)} = c.{q(col)}" for col, r in zip(self.columns, self.ref_columns))
        notnull = " AND ".join(f"c.{q(col)} IS NOT NULL" for col in self.columns)
        return (f"SELECT count(*) FROM {q(self.table)} c LEFT JOIN {q(self.ref_table)} p ON {on} "
                f"WHERE {notnull} AND p.{q(self.ref_columns[0])} IS NULL")


def added_foreign_keys(sql_by_rev: dict[str, str]) -> list[ForeignKey]:
    """FOREIGN KEY constraints added to tables by ALTER TABLE in the given SQL."""
    import pglast
    from pglast import enums

    out = []
    for rev, sql in sql_by_rev.items():
        try:
            stmts = pglast.parse_sql(sql)
        except Exception:  # noqa: BLE001 - unparsable SQL is the linter's business
            continue
        for raw in stmts:
            st = raw.stmt
            if type(st).__name__ != "AlterTableStmt":
                continue
            for cmd in st.cmds or ():
                d = getattr(cmd, "def_", None)
                if cmd.subtype != enums.AlterTableType.AT_AddConstraint or d is None:
                    continue
                if d.contype != enums.ConstrType.CONSTR_FOREIGN or not d.pk_attrs:
                    continue
                out.append(ForeignKey(rev, d.conname, st.relation.relname, [a.sval for a in d.fk_attrs],
                                      d.pktable.relname, [a.sval for a in d.pk_attrs]))
    return out


def find_orphans(conn, fks: list[ForeignKey]) -> list[tuple[ForeignKey, int]]:
    """(fk, orphan count) for each FK whose tables and columns already exist and have orphans."""
    found = []
    for fk in fks:
        tables = set(public_tables(conn))
        if fk.table not in tables or fk.ref_table not in tables:
            continue  # created by an earlier pending revision: no live rows to check
        cols = {t: public_columns(conn, t) for t in (fk.table, fk.ref_table)}
        if not set(fk.columns) <= cols[fk.table] or not set(fk.ref_columns) <= cols[fk.ref_table]:
            continue  # created by an earlier pending revision: no live rows to check
        n = conn.execute(text(fk.query())).scalar_one()
        if n:
            found.append((fk, n))
    return found
