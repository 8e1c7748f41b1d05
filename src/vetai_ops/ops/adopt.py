"""``invoke adopt``: take over a database built by the backend's TypeORM migrations.

1. refuse when the database already has ``alembic_version`` (it is managed already), or
   has no TypeORM ``migrations`` table, or that table names migrations that are not the
   guide's 13 (or not a prefix of them: :func:`vetai_ops.schema.typeorm.revision_for_typeorm`);
2. build a reference: a scratch database ``<db>_adopt_ref`` on the same server, upgraded
   with Alembic to the revision equivalent to the last applied TypeORM migration;
3. compare the live schema with the reference, from PostgreSQL's own catalog (both on the
   same server, so ``format_type`` / ``pg_get_constraintdef`` / ``pg_get_indexdef`` render
   identically): tables, columns (type, NOT NULL, default), constraints (PK, FK with
   ON DELETE, UNIQUE, CHECK), indexes (incl. partial / unique) and enum types. Names count:
   later Alembic revisions drop and alter objects by name. Any difference refuses, naming it;
4. on a protected env, confirm (type the env name) unless ``--yes``; no terminal -> refuse;
5. ``alembic stamp <revision>`` plus the Flyway-style hashes of the adopted revisions in
   ``vetai_ops_applied``, in one transaction, and a ``deploy_history`` row.

The reference database is always dropped. Nothing in the live DB changes unless step 5 runs.
"""

from __future__ import annotations

import re
import time

from sqlalchemy import text

from ..database import migrations as mig
from ..errors import GateRefused
from ..schema.typeorm import TYPEORM_MIGRATIONS, revision_for_typeorm
from ..database.introspect import create_database
from . import drop_database, op_context

IGNORED_TABLES = set(mig.OPS_TABLES) | {"typeorm_metadata", "query-result-cache"}

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


def snapshot(conn) -> dict:
    """The schema of ``public`` as comparable plain data (ops/TypeORM bookkeeping excluded)."""
    tables: dict[str, dict] = {}
    for r in conn.execute(text(COLUMNS_SQL)).mappings():
        if r["tbl"] in IGNORED_TABLES:
            continue
        tables.setdefault(r["tbl"], {})[r["col"]] = {"type": r["type"], "not null": r["notnull"], "default": r["dflt"]}
    cons = {(r["tbl"], r["name"]): (r["kind"], r["def"]) for r in conn.execute(text(CONSTRAINTS_SQL)).mappings()
            if r["tbl"] not in IGNORED_TABLES}
    idx = {(r["tbl"], r["name"]): _strip_index_name(r["def"]) for r in conn.execute(text(INDEXES_SQL)).mappings()
           if r["tbl"] not in IGNORED_TABLES}
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


def adopt(env_name: str | None, *, yes: bool = False, sink=None, confirm=None) -> dict:
    from ..journal import record_history
    from ..steps.lock import lock as take_lock
    from ..steps.validate import APPLIED_DDL

    with op_context(env_name, "adopt", sink=sink, options={"yes": yes}, confirm=confirm) as ctx:
        env, access = ctx.env, ctx.access
        ctx.emit("run_started", f"adopt {access.db.name} on {env.name}", step=None, run_id=ctx.run_id)
        take_lock(ctx)
        report: dict = {"env": env.name, "database": access.db.name, "ok": False, "differences": []}
        with access.engine().connect() as conn:
            has_alembic = conn.execute(text("select to_regclass('public.alembic_version')")).scalar()
            if has_alembic:
                cur = mig.current(conn)
                raise GateRefused(
                    f"database {access.db.name} of env {env.name!r} is already managed by Alembic "
                    f"(alembic_version says {cur or 'empty'}); nothing to adopt, nothing changed",
                    "use `invoke status` and `invoke deploy`",
                )
            rows = read_typeorm(conn)
        names = [r["name"] for r in rows]
        try:
            rev = revision_for_typeorm(names)
        except ValueError as e:
            raise GateRefused(f"cannot adopt: {e}; nothing changed",
                              "the migrations table must list a prefix of the guide's 13 TypeORM migrations") from None
        if rev is None:
            raise GateRefused("TypeORM's migrations table is empty: no migration was applied; nothing changed",
                              "for an empty database run `invoke deploy` instead")
        by_name = {m.name: m for m in TYPEORM_MIGRATIONS}
        bad_ts = [f"{r['name']} has timestamp {r['timestamp']}, expected {by_name[r['name']].timestamp}"
                  for r in rows if int(r["timestamp"]) != by_name[r["name"]].timestamp]
        last = max((by_name[n] for n in names), key=lambda m: m.timestamp)
        report.update(typeorm_last=last.name, typeorm_applied=len(rows), revision=rev)
        ctx.emit("info", f"TypeORM applied {len(rows)} migrations, last {last.name} = Alembic revision {rev}")

        # the reference schema: a scratch DB upgraded to `rev`
        ref = f"{access.db.name}_adopt_ref".lower()
        t0 = time.monotonic()
        try:
            drop_database(ctx, ref)
            create_database(access.admin_engine(), ref)
            eng = access.engine(ref)
            with eng.connect() as conn:
                mig.upgrade(conn, rev)
                conn.commit()
            with eng.connect() as conn:
                expected = snapshot(conn)
            eng.dispose()
        finally:
            try:
                drop_database(ctx, ref)
            except Exception:  # noqa: BLE001
                ctx.emit("warning", f"could not drop the reference database {ref}")
        with access.engine().connect() as conn:
            live = snapshot(conn)
        diffs = bad_ts + compare(expected, live)
        report.update(differences=diffs, compare_s=round(time.monotonic() - t0, 3),
                      tables=len(expected["tables"]))
        if diffs:
            shown = "\n  - ".join(diffs[:30]) + (f"\n  - ... and {len(diffs) - 30} more" if len(diffs) > 30 else "")
            raise GateRefused(
                f"the live schema of {access.db.name} does not match Alembic revision {rev} "
                f"(TypeORM {last.name}); {len(diffs)} difference(s), nothing changed:\n  - {shown}",
                "bring the schema in line with that migration (or find which TypeORM migration it really is at), "
                "then run `invoke adopt` again",
                report=report,
            )
        ctx.emit("info", f"live schema matches revision {rev}: {len(expected['tables'])} tables compared")

        if env.protected and not yes:
            if ctx.confirm is None:
                raise GateRefused(f"env {env.name!r} is protected and no terminal is attached to confirm; nothing changed",
                                  "re-run with --yes", report=report)
            if not ctx.confirm(env.name, report):
                raise GateRefused(f"adopt on {env.name!r} not confirmed; nothing changed", report=report)

        files = mig.history_hashes()
        adopted = mig.chain(None, rev)
        with access.engine().begin() as conn:
            conn.execute(text(APPLIED_DDL))
            for r in adopted:
                fname, sha = files[r]
                conn.execute(text("INSERT INTO vetai_ops_applied (revision, file, sha256) VALUES (:r, :f, :s)"
                                  " ON CONFLICT (revision) DO NOTHING"), {"r": r, "f": fname, "s": sha})
            mig.stamp(conn, rev)
            now_rev = mig.current(conn)
        if now_rev != rev:
            raise GateRefused(f"stamp did not take: database reports revision {now_rev}, expected {rev}")
        report.update(ok=True, stamped=rev, head=mig.head(), pending=mig.chain(rev, mig.head()))
        try:
            record_history(access.engine(), {
                "run_id": ctx.run_id, "action": "adopt", "env": env.name, "operator": ctx.operator,
                "started": ctx.started, "finished": time.time(), "from_revision": None, "to_revision": rev,
                "backup_id": None, "outcome": "success", "error": None, "steps": [], "revisions": [],
                "tool_version": __import__("vetai_ops").__version__,
            })
        except Exception:  # noqa: BLE001
            ctx.emit("warning", "could not write deploy_history")
        ctx.emit("run_finished", f"adopted at {rev}", step=None, outcome="success",
                 duration_s=round(time.time() - ctx.started, 3))
        return report
