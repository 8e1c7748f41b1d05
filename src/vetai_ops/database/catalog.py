"""The schema of a database as plain, JSON-ready data, read from PostgreSQL's own catalog,
and the object-by-object comparison of two such snapshots.

One query set (psycopg, on the connection's driver connection) reads, for the app's
schema (:data:`APP_SCHEMA`, the one the migrations own): tables; columns (``format_type`` type, nullability, default or identity /
generated expression); constraints (PK, FK with its ON DELETE / ON UPDATE actions, UNIQUE,
CHECK, EXCLUDE, as ``pg_get_constraintdef`` renders them); indexes that do not back a
constraint (``pg_get_indexdef`` without the index's own name: partial and expression
indexes too); enum types and their values in order. Names count: later revisions alter
and drop objects by name, so a renamed index is a difference. While it reads, the app's
schema stands first on the session's search_path (:func:`app_schema_first`): a table or type
of the same name in another schema the database's or role's search_path puts earlier (an
extension's) neither shadows the app's objects nor makes their definitions come out
schema-qualified, which would be drift the history never made.

The tables vetai-ops and TypeORM keep for themselves (:data:`IGNORED_TABLES`, and a TypeORM
journal with a custom name that ``adopt --table`` marked; tables an extension owns, like
PostGIS's ``spatial_ref_sys``) and every object on them are left out: they are
bookkeeping, not the app's schema.

:func:`compare` returns :class:`Difference` items: ``kind`` (table, column, index,
constraint, enum), ``name`` (``pets``, ``pets.weight``, ``pets.ix_pets_name``,
``appointment_status``) and ``detail`` (what differs, live vs expected). The detail of a
difference depends only on that object, so an accepted difference keeps its identity
(``kind``, ``name``, ``detail``) from one run to the next, and any change to it is new.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass

from psycopg.rows import dict_row

APP_SCHEMA = "public"  # the schema the migrations own: the only one drift, models and orphans read
FORMAT = 2  # bump when the snapshot's shape or rendering changes (invalidates cached references)

# bookkeeping tables: vetai-ops's own, Alembic's, TypeORM's (journal, metadata, query cache)
IGNORED_TABLES = frozenset({
    "alembic_version", "deploy_history", "vetai_ops_applied", "vetai_ops_accepted_drift",
    "migrations", "typeorm_metadata", "query-result-cache",
})

_JOURNALS = """
select c.relname as tbl from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relkind in ('r', 'p')
  and (obj_description(c.oid, 'pg_class') = %(journal)s
       or exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                  and d.deptype = 'e'))
"""
_TABLES = """
select c.relname as tbl from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relkind in ('r', 'p') and not c.relispartition
"""
_COLUMNS = """
select c.relname as tbl, a.attname as col, format_type(a.atttypid, a.atttypmod) as type,
       a.attnotnull as notnull, pg_get_expr(d.adbin, d.adrelid) as dflt, a.attidentity as ident,
       a.attgenerated as gen
from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where n.nspname = %(schema)s and c.relkind in ('r', 'p') and not c.relispartition
  and a.attnum > 0 and not a.attisdropped
"""
_CONSTRAINTS = """
select c.relname as tbl, con.conname as name, con.contype as kind, pg_get_constraintdef(con.oid) as def
from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and con.contype in ('p', 'f', 'u', 'c', 'x') and not c.relispartition
"""
_INDEXES = """
select c.relname as tbl, ic.relname as name, pg_get_indexdef(i.indexrelid) as def
from pg_index i join pg_class c on c.oid = i.indrelid join pg_class ic on ic.oid = i.indexrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and not c.relispartition
  and not exists (select 1 from pg_constraint con where con.conindid = i.indexrelid and con.conrelid = i.indrelid)
"""
_ENUMS = """
select t.typname as name, array_agg(e.enumlabel::text order by e.enumsortorder) as labels
from pg_type t join pg_enum e on e.enumtypid = t.oid join pg_namespace n on n.oid = t.typnamespace
where n.nspname = %(schema)s group by t.typname
"""
CONSTRAINT_KINDS = {"p": "primary key", "f": "foreign key", "u": "unique", "c": "check", "x": "exclusion"}


@dataclass(frozen=True)
class Difference:
    """One object that differs: ``kind`` table/column/constraint/index/enum, ``name`` the
    object (``table.object`` for columns, constraints, indexes), ``detail`` what differs."""

    kind: str
    name: str
    detail: str
    accepted: bool = False

    @property
    def id(self) -> str:
        """What ``--accept-drift=`` takes: ``kind:name`` (e.g. ``index:pets.ix_pets_name``)."""
        return f"{self.kind}:{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.name, self.detail)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.detail}"

    def to_dict(self) -> dict:
        return asdict(self)


def driver_connection(conn):
    """The psycopg connection under a SQLAlchemy Connection (or ``conn`` itself)."""
    fairy = getattr(conn, "connection", None)  # SQLAlchemy Connection -> pool proxy
    return getattr(fairy, "driver_connection", None) or conn


@contextlib.contextmanager
def app_schema_first(conn):
    """For the block, :data:`APP_SCHEMA` first on the session's search_path, the schemas it
    named after it (then the path as it was): unqualified names resolve to the app's
    objects, and ``pg_get_constraintdef`` / ``format_type`` render them unqualified, as in
    a database the history built."""
    pg = driver_connection(conn)
    with pg.cursor() as cur:
        cur.execute("select current_setting('search_path')")
        was = cur.fetchone()[0]
        cur.execute("select set_config('search_path', array_to_string(array[quote_ident(%(s)s)] || array("
                    "select quote_ident(x) from unnest(current_schemas(false)) x where x <> %(s)s), ', '), false)",
                    {"s": APP_SCHEMA})
    try:
        yield
    finally:
        with contextlib.suppress(Exception), pg.cursor() as cur:  # an aborted transaction reverts it anyway
            cur.execute("select set_config('search_path', %s, false)", (was,))


def snapshot(conn, schema: str = APP_SCHEMA, ignore: set[str] | frozenset[str] = frozenset()) -> dict:
    """The app schema of ``conn``'s database as plain data (JSON-serialisable). Left out:
    :data:`IGNORED_TABLES`, a TypeORM journal ``adopt --table`` marked, and ``ignore``."""
    with app_schema_first(conn):
        return _snapshot(conn, schema, ignore)


def _snapshot(conn, schema: str, ignore: set[str] | frozenset[str]) -> dict:
    from .typeorm_journal import JOURNAL_COMMENT

    pg = driver_connection(conn)
    args = {"schema": schema, "journal": JOURNAL_COMMENT}
    with pg.cursor(row_factory=dict_row) as cur:
        cur.execute(_JOURNALS, args)
        skip = IGNORED_TABLES | {r["tbl"] for r in cur.fetchall()} | set(ignore)

        def rows(q):  # the rows of one catalog query, bookkeeping tables left out
            cur.execute(q, args)
            return [r for r in cur.fetchall() if r.get("tbl") not in skip]

        tables: dict[str, dict] = {r["tbl"]: {} for r in rows(_TABLES)}
        for r in rows(_COLUMNS):
            default = r["dflt"]
            if r["ident"]:
                default = "generated " + ("always" if r["ident"] == "a" else "by default") + " as identity"
            elif r["gen"]:
                default = f"generated always as ({r['dflt']}) stored"
            tables.setdefault(r["tbl"], {})[r["col"]] = {"type": r["type"], "nullable": not r["notnull"],
                                                         "default": default}
        constraints: dict[str, dict] = {}
        for r in rows(_CONSTRAINTS):
            constraints.setdefault(r["tbl"], {})[r["name"]] = {"kind": CONSTRAINT_KINDS[r["kind"]], "definition": r["def"]}
        indexes: dict[str, dict] = {}
        for r in rows(_INDEXES):
            indexes.setdefault(r["tbl"], {})[r["name"]] = {"definition": _strip_index_name(r["def"])}
        enums = {r["name"]: list(r["labels"]) for r in rows(_ENUMS)}
    return {"format": FORMAT, "tables": tables, "constraints": constraints, "indexes": indexes, "enums": enums}


def empty_snapshot() -> dict:
    """The schema at revision 'base': nothing."""
    return {"format": FORMAT, "tables": {}, "constraints": {}, "indexes": {}, "enums": {}}


def _strip_index_name(d: str) -> str:
    return re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON ", r"CREATE \1INDEX ON ", d)


def _null(c: dict) -> str:
    return "NULL" if c["nullable"] else "NOT NULL"


def _coldesc(c: dict) -> str:
    return f"{c['type']} {_null(c)}" + (f" DEFAULT {c['default']}" if c["default"] is not None else "")


def compare(expected: dict, live: dict) -> list[Difference]:
    """Every object of ``live`` that differs from ``expected`` (empty: the same schema)."""
    out: list[Difference] = []
    et, lt = expected["tables"], live["tables"]
    for t in sorted(set(et) - set(lt)):
        out.append(Difference("table", t, "missing in the live database"))
    for t in sorted(set(lt) - set(et)):
        cols = ", ".join(f"{c} {_coldesc(v)}" for c, v in sorted(lt[t].items()))
        out.append(Difference("table", t, f"in the live database, not in the history (columns: {cols or 'none'})"))
    eq = expected.get("equivalent") or {}  # the spellings a dump + restore gives (see reference.equivalent_forms)
    eq_defaults = eq.get("defaults", {})
    common = sorted(set(et) & set(lt))
    for t in common:
        for c in sorted(set(et[t]) - set(lt[t])):
            out.append(Difference("column", f"{t}.{c}", f"missing in the live database (expected {_coldesc(et[t][c])})"))
        for c in sorted(set(lt[t]) - set(et[t])):
            out.append(Difference("column", f"{t}.{c}", f"in the live database ({_coldesc(lt[t][c])}), not in the history"))
        for c in sorted(set(et[t]) & set(lt[t])):
            e, l_ = et[t][c], lt[t][c]
            parts = []
            if e["type"] != l_["type"]:
                parts.append(f"type {l_['type']} live, expected {e['type']}")
            if e["nullable"] != l_["nullable"]:
                parts.append(f"{_null(l_)} live, expected {_null(e)}")
            if e["default"] != l_["default"] and l_["default"] != eq_defaults.get(t, {}).get(c, e["default"]):
                parts.append(f"default {l_['default'] or 'none'} live, expected {e['default'] or 'none'}")
            if parts:
                out.append(Difference("column", f"{t}.{c}", "; ".join(parts)))
    for t in common:
        out += _named("constraint", t, expected["constraints"].get(t, {}), live["constraints"].get(t, {}),
                      eq.get("constraints", {}).get(t, {}))
        out += _named("index", t, expected["indexes"].get(t, {}), live["indexes"].get(t, {}), eq.get("indexes", {}).get(t, {}))
    ee, le = expected["enums"], live["enums"]
    for n in sorted(set(ee) - set(le)):
        out.append(Difference("enum", n, f"missing in the live database (expected values {', '.join(ee[n])})"))
    for n in sorted(set(le) - set(ee)):
        out.append(Difference("enum", n, f"in the live database (values {', '.join(le[n])}), not in the history"))
    for n in sorted(set(ee) & set(le)):
        if ee[n] != le[n]:
            added = [v for v in le[n] if v not in ee[n]]
            missing = [v for v in ee[n] if v not in le[n]]
            what = "; ".join(([f"added {', '.join(added)}"] if added else []) + ([f"missing {', '.join(missing)}"] if missing else [])) \
                or "same values, another order"
            out.append(Difference("enum", n, f"values {', '.join(le[n])} live, expected {', '.join(ee[n])} ({what})"))
    return out


def _desc(kind: str, v: dict) -> str:
    return f"{v['kind']} {v['definition']}" if kind == "constraint" else v["definition"]


def _named(kind: str, table: str, exp: dict, live: dict, equivalent: dict) -> list[Difference]:
    """Constraints or indexes of one table, by name; a renamed one is reported once, as such.
    ``equivalent``: name -> the same definition in its restored spelling."""
    out = []
    missing = {n: v for n, v in exp.items() if n not in live}
    extra = {n: v for n, v in live.items() if n not in exp}
    for n, v in sorted(missing.items()):
        twin = next((x for x, lv in sorted(extra.items()) if lv in (v, equivalent.get(n))), None)
        if twin is not None:
            extra.pop(twin)
            out.append(Difference(kind, f"{table}.{n}", f"named {twin} live (same definition: {_desc(kind, v)}); "
                                                        "later revisions refer to it by name"))
        else:
            out.append(Difference(kind, f"{table}.{n}", f"missing in the live database (expected {_desc(kind, v)})"))
    for n, v in sorted(extra.items()):
        out.append(Difference(kind, f"{table}.{n}", f"in the live database ({_desc(kind, v)}), not in the history"))
    for n in sorted(set(exp) & set(live)):
        if exp[n] != live[n] and live[n] != equivalent.get(n):
            out.append(Difference(kind, f"{table}.{n}", f"{_desc(kind, live[n])} live, expected {_desc(kind, exp[n])}"))
    return out
