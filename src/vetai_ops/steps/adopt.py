"""Adopt a database built by the backend's TypeORM migrations (``invoke adopt``).

``adopt_check``: refuse when the database already has ``alembic_version``, has no TypeORM
journal (``migrations``, or the ``--table`` the backend set as ``migrationsTableName``), or
that journal, ordered by timestamp as TypeORM orders it, is not exactly the guide's first
N migrations (unknown, re-timestamped, duplicated or missing names are named:
:func:`vetai_ops.schema.typeorm.revision_for_typeorm`); build a reference database
``<db>_adopt_ref`` upgraded with Alembic to the equivalent revision, compare the live schema
with it (:mod:`vetai_ops.database.schema_compare`) and refuse on any difference, naming it.
The reference database is always dropped. Its report becomes the plan ``confirm`` shows.

``adopt_stamp``: ``alembic stamp <revision>`` plus the Flyway-style hashes of the adopted
revisions in ``vetai_ops_applied`` (and, for a journal with a custom name, the comment that
keeps it out of schema comparisons), in one transaction. Nothing in the live DB changes
before this step.
"""

from __future__ import annotations

import time

from sqlalchemy import text

from ..database import migrations as mig
from ..database.introspect import create_database, drop_database
from ..database.schema_compare import compare, snapshot
from ..database.typeorm_journal import DEFAULT_TABLE, check_table_name, mark_journal, read_typeorm
from ..errors import GateRefused
from ..schema.typeorm import TypeOrmHistoryError, revision_for_typeorm, typeorm_for_revision
from . import step
from .validate import APPLIED_DDL


@step("adopt_check")
def adopt_check(ctx, **_):
    env, access = ctx.env, ctx.access
    table = check_table_name(ctx.options.get("table") or DEFAULT_TABLE)
    report: dict = {"env": env.name, "database": access.db.name, "ok": False, "differences": [],
                    "typeorm_table": table}
    ctx.state["adopt"] = report
    with access.engine().connect() as conn:
        if conn.execute(text("select to_regclass('public.alembic_version')")).scalar():
            cur = mig.current(conn)
            raise GateRefused(
                f"database {access.db.name} of env {env.name!r} is already managed by Alembic "
                f"(alembic_version says {cur or 'empty'}); nothing to adopt, nothing changed",
                "use `invoke status` and `invoke deploy`",
            )
        rows = read_typeorm(conn, table)  # ordered by timestamp, as TypeORM orders them
    report["typeorm_names"] = [r["name"] for r in rows]
    try:
        rev = revision_for_typeorm([(r["timestamp"], r["name"]) for r in rows])
    except TypeOrmHistoryError as e:
        report["refused_names"] = e.names
        raise GateRefused(f"cannot adopt: TypeORM table {table!r}: {e}; nothing changed",
                          f"{table!r} must list exactly the guide's first N migrations, by their exact names "
                          "(see src/vetai_ops/schema/typeorm.py); fix the table or the database, then run "
                          "`invoke adopt` again", report=report) from None
    if rev is None:
        raise GateRefused(f"TypeORM's {table!r} table is empty: no migration was applied; nothing changed",
                          "for an empty database run `invoke deploy` instead")
    last = typeorm_for_revision(rev)
    report.update(typeorm_last=last.name, typeorm_applied=len(rows), revision=rev)
    ctx.emit("info", f"TypeORM applied {len(rows)} migrations, last {last.name} = Alembic revision {rev}")

    # the reference schema: a scratch DB upgraded to `rev`
    ref = f"{access.db.name}_adopt_ref".lower()
    maint = access.admin_engine()
    t0 = time.monotonic()
    try:
        drop_database(maint, ref)
        create_database(maint, ref)
        eng = access.engine(ref)
        try:
            with eng.connect() as conn:
                mig.upgrade(conn, rev)
                conn.commit()
            with eng.connect() as conn:
                expected = snapshot(conn)
        finally:
            eng.dispose()
    finally:
        try:
            drop_database(maint, ref)
        except Exception:  # noqa: BLE001
            ctx.emit("warning", f"could not drop the reference database {ref}")
    with access.engine().connect() as conn:
        live = snapshot(conn, ignore={table})
    diffs = compare(expected, live)
    report.update(differences=diffs, compare_s=round(time.monotonic() - t0, 3), tables=len(expected["tables"]))
    if diffs:
        shown = "\n  - ".join(diffs[:30]) + (f"\n  - ... and {len(diffs) - 30} more" if len(diffs) > 30 else "")
        raise GateRefused(
            f"the live schema of {access.db.name} does not match Alembic revision {rev} "
            f"(TypeORM {last.name}); {len(diffs)} difference(s), nothing changed:\n  - {shown}",
            "bring the schema in line with that migration (or find which TypeORM migration it really is at), "
            "then run `invoke adopt` again",
            report=report,
        )
    ctx.state["plan"] = report  # what confirm shows on a protected env
    return f"live schema matches revision {rev}: {len(expected['tables'])} tables compared"


@step("adopt_stamp")
def adopt_stamp(ctx, **_):
    report, access = ctx.state["adopt"], ctx.access
    rev = report["revision"]
    files = mig.history_hashes()
    ctx.state["db_touched"] = True  # from here the run is journaled in deploy_history
    with access.engine().begin() as conn:
        conn.execute(text(APPLIED_DDL))
        for r in mig.chain(None, rev):
            fname, sha = files[r]
            conn.execute(text("INSERT INTO vetai_ops_applied (revision, file, sha256) VALUES (:r, :f, :s)"
                              " ON CONFLICT (revision) DO NOTHING"), {"r": r, "f": fname, "s": sha})
        if report["typeorm_table"] != DEFAULT_TABLE:
            mark_journal(conn, report["typeorm_table"])
        mig.stamp(conn, rev)
        now_rev = mig.current(conn)
    if now_rev != rev:
        raise GateRefused(f"stamp did not take: database reports revision {now_rev}, expected {rev}")
    report.update(ok=True, stamped=rev, head=mig.head(), pending=mig.chain(rev, mig.head()))
    ctx.state.update(from_rev=None, to_rev=rev)
    return f"stamped {rev}"
