"""Compare two databases' public schemas from PostgreSQL's own catalog: the evidence
``invoke adopt`` needs before it stamps a database (TypeORM's journal is read by
:mod:`.typeorm_journal`).

Both databases live on the same server, so ``format_type`` / ``pg_get_constraintdef`` /
``pg_get_indexdef`` render identically: tables, columns (type, NOT NULL, default),
constraints (PK, FK with ON DELETE, UNIQUE, CHECK), indexes (incl. partial / unique) and
enum types. Names count: later Alembic revisions drop and alter objects by name.
"""

from __future__ import annotations

import re

from sqlalchemy import text

from .migrations import OPS_TABLES
from .typeorm_journal import journal_tables

IGNORED_TABLES = set(OPS_TABLES) | {"typeorm_metadata", "query-result-cache"}

COLUMNS_SQL = """
select c.relname as tbl, a.attname as col, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as notnull,
       pg_get_expr(d.adbin, d.adrelid) as dflt
from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where n.nspname = 'public' and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
"""
CONSTRAINTS_SQL = """
select c.relname as tbl, con.conname as name, con.contype as kind, pg_get_constraintdef(con.oid) as def
from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public'
"""
INDEXES_SQL = """
select c.relname as tbl, ic.relname as name, pg_get_indexdef(i.indexrelid) as def
from pg_index i join pg_class c on c.oid = i.indrelid join pg_class ic on ic.oid = i.indexrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and not exists (select 1 from pg_constraint con where con.conindid = i.indexrelid)
"""
ENUMS_SQL = """
select t.typname as name, string_agg(e.enumlabel, ',' order by e.enumsortorder) as labels
from pg_type t join pg_enum e on e.enumtypid = t.oid join pg_namespace n on n.oid = t.typnamespace
where n.nspname = 'public' group by t.typname
"""
KINDS = {"p": "primary key", "f": "foreign key", "u": "unique constraint", "c": "check constraint", "x": "exclusion constraint"}


def snapshot(conn, ignore: set[str] | frozenset[str] = frozenset()) -> dict:
    """The schema of ``public`` as comparable plain data (ops/TypeORM bookkeeping excluded:
    :data:`IGNORED_TABLES`, a TypeORM journal marked by ``adopt --table``, and ``ignore``)."""
    skip = IGNORED_TABLES | journal_tables(conn) | set(ignore)
    tables: dict[str, dict] = {}
    for r in conn.execute(text(COLUMNS_SQL)).mappings():
        if r["tbl"] in skip:
            continue
        tables.setdefault(r["tbl"], {})[r["col"]] = {"type": r["type"], "not null": r["notnull"], "default": r["dflt"]}
    cons = {(r["tbl"], r["name"]): (r["kind"], r["def"]) for r in conn.execute(text(CONSTRAINTS_SQL)).mappings()
            if r["tbl"] not in skip}
    idx = {(r["tbl"], r["name"]): _strip_index_name(r["def"]) for r in conn.execute(text(INDEXES_SQL)).mappings()
           if r["tbl"] not in skip}
    enums = {r["name"]: r["labels"] for r in conn.execute(text(ENUMS_SQL)).mappings()}
    return {"tables": tables, "constraints": cons, "indexes": idx, "enums": enums}


def _strip_index_name(d: str) -> str:
    return re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON ", r"CREATE \1INDEX ON ", d)


def compare(expected: dict, live: dict) -> list[str]:
    """Human-readable differences of ``live`` against ``expected`` (empty = same schema)."""
    out: list[str] = []
    et, lt = expected["tables"], live["tables"]
    for t in sorted(set(et) - set(lt)):
        out.append(f"table {t}: missing in the live database")
    for t in sorted(set(lt) - set(et)):
        out.append(f"table {t}: in the live database but not in the expected schema")
    for t in sorted(set(et) & set(lt)):
        for c in sorted(set(et[t]) - set(lt[t])):
            out.append(f"column {t}.{c}: missing in the live database (expected {et[t][c]['type']})")
        for c in sorted(set(lt[t]) - set(et[t])):
            out.append(f"column {t}.{c}: in the live database ({lt[t][c]['type']}) but not in the expected schema")
        for c in sorted(set(et[t]) & set(lt[t])):
            for k in ("type", "not null", "default"):
                if et[t][c][k] != lt[t][c][k]:
                    out.append(f"column {t}.{c}: {k} is {lt[t][c][k]!r} live, expected {et[t][c][k]!r}")
    out += _compare_named(expected["constraints"], live["constraints"], set(et) & set(lt),
                          lambda v: KINDS.get(v[0], "constraint"), lambda v: v[1])
    out += _compare_named(expected["indexes"], live["indexes"], set(et) & set(lt), lambda v: "index", lambda v: v)
    ee, le = expected["enums"], live["enums"]
    for n in sorted(set(ee) - set(le)):
        out.append(f"enum type {n}: missing in the live database (expected values {ee[n]})")
    for n in sorted(set(le) - set(ee)):
        out.append(f"enum type {n}: in the live database ({le[n]}) but not in the expected schema")
    for n in sorted(set(ee) & set(le)):
        if ee[n] != le[n]:
            out.append(f"enum type {n}: values {le[n]} live, expected {ee[n]}")
    return out


def _compare_named(exp: dict, live: dict, tables: set, kind, definition) -> list[str]:
    """Objects keyed by (table, name): report missing/extra/changed, and renamed ones as such."""
    out = []
    missing = {k: v for k, v in exp.items() if k not in live and k[0] in tables}
    extra = {k: v for k, v in live.items() if k not in exp and k[0] in tables}
    for (t, name), v in sorted(missing.items()):
        twin = next((k for k, lv in extra.items() if k[0] == t and lv == v), None)
        if twin is not None:
            extra.pop(twin)
            out.append(f"{kind(v)} {definition(v)} on {t}: named {twin[1]} live, expected {name} "
                       "(later migrations refer to it by name)")
        else:
            out.append(f"{kind(v)} {name} on {t}: missing in the live database ({definition(v)})")
    for (t, name), v in sorted(extra.items()):
        out.append(f"{kind(v)} {name} on {t}: in the live database ({definition(v)}) but not in the expected schema")
    for k in sorted(set(exp) & set(live)):
        if k[0] in tables and exp[k] != live[k]:
            out.append(f"{kind(exp[k])} {k[1]} on {k[0]}: {definition(live[k])} live, expected {definition(exp[k])}")
    return out
