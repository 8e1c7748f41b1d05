"""Orphan rows for foreign keys (the guide's LEFT JOIN check, composed with psycopg.sql):
those that pending revisions add (before anything runs), and every existing one (``invoke check``).

The foreign keys come from the pending revisions' rendered SQL (Alembic offline mode),
parsed with pglast (PostgreSQL's own parser); each is checked against the live data
before anything runs, so a deploy never fails half-way on "violates foreign key constraint".
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql
from psycopg.rows import dict_row

from .catalog import APP_SCHEMA, IGNORED_TABLES, driver_connection
from .introspect import public_columns, public_tables


@dataclass
class ForeignKey:
    revision: str | None
    name: str | None
    table: str
    columns: list[str]
    ref_table: str
    ref_columns: list[str]

    def composed(self, rows: bool = False) -> sql.Composed:
        """The guide's diagnostic, for this key: child LEFT JOIN parent, where the child's key
        columns are all set and no parent matches (``count(*)``, or the orphan rows). The
        tables are the app schema's, whatever else the search_path finds first."""
        on = sql.SQL(" AND ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(r), sql.Identifier(col))
            for col, r in zip(self.columns, self.ref_columns))
        notnull = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(col)) for col in self.columns)
        return sql.SQL("SELECT {what} FROM {child} c LEFT JOIN {parent} p ON {on} WHERE {notnull} AND p.{ref} IS NULL").format(
            what=sql.SQL("c.*" if rows else "count(*)"), child=sql.Identifier(APP_SCHEMA, self.table),
            parent=sql.Identifier(APP_SCHEMA, self.ref_table), on=on, notnull=notnull, ref=sql.Identifier(self.ref_columns[0]))

    def query(self, rows: bool = False) -> str:
        return self.composed(rows).as_string()


def added_foreign_keys(sql_by_rev: dict[str, str]) -> list[ForeignKey]:
    """FOREIGN KEY constraints added to tables by ALTER TABLE in the given SQL."""
    import pglast
    from pglast import enums

    out = []
    for rev, text_ in sql_by_rev.items():
        try:
            stmts = pglast.parse_sql(text_)
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
        n = count(conn, fk)
        if n:
            found.append((fk, n))
    return found


def count(conn, fk: ForeignKey) -> int:
    with driver_connection(conn).cursor() as cur:
        cur.execute(fk.composed())
        return cur.fetchone()[0]


_EXISTING = """
select con.conname as name, cl.relname as child, pcl.relname as parent,
       array(select a.attname::text from unnest(con.conkey) with ordinality k(att, ord)
             join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.att order by k.ord) as cols,
       array(select a.attname::text from unnest(con.confkey) with ordinality k(att, ord)
             join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.att order by k.ord) as pcols
from pg_constraint con join pg_class cl on cl.oid = con.conrelid join pg_class pcl on pcl.oid = con.confrelid
join pg_namespace n on n.oid = cl.relnamespace join pg_namespace pn on pn.oid = pcl.relnamespace
where con.contype = 'f' and n.nspname = %(s)s and pn.nspname = %(s)s
order by cl.relname, con.conname
"""


def existing_foreign_keys(conn) -> list[ForeignKey]:
    """Every foreign key of the app's tables, from the catalog (composite keys too)."""
    with driver_connection(conn).cursor(row_factory=dict_row) as cur:
        cur.execute(_EXISTING, {"s": APP_SCHEMA})
        return [ForeignKey(None, r["name"], r["child"], list(r["cols"]), r["parent"], list(r["pcols"]))
                for r in cur.fetchall() if r["child"] not in IGNORED_TABLES]


def orphan_report(conn) -> list[dict]:
    """For every existing foreign key: its orphan rows (count) and the query that lists them."""
    return [{"constraint": fk.name, "table": fk.table, "columns": fk.columns, "ref_table": fk.ref_table,
             "ref_columns": fk.ref_columns, "orphans": count(conn, fk), "query": fk.query(rows=True)}
            for fk in existing_foreign_keys(conn)]
