"""Adopt a database built by the backend's TypeORM migrations (``invoke adopt``).

``adopt_check``: refuse when the database already has ``alembic_version``, has no TypeORM
journal (``migrations``, or the ``--table`` the backend set as ``migrationsTableName``), or
that journal, ordered by timestamp as TypeORM orders it, is not exactly the guide's first
N migrations (unknown, re-timestamped, duplicated or missing names are named:
:func:`vetai_ops.schema.typeorm.revision_for_typeorm`); compare the live schema with the
reference the history builds at the equivalent revision (:mod:`vetai_ops.database.reference`,
cached) and refuse on any difference, naming it, unless ``--accept-drift`` names it.
Its report becomes the plan ``confirm`` shows.

``adopt_stamp``: ``alembic stamp <revision>`` plus the Flyway-style hashes of the adopted
revisions in ``vetai_ops_applied``, the accepted drift (who, when) in
``vetai_ops_accepted_drift`` (and, for a journal with a custom name, the comment that
keeps it out of schema comparisons), in one transaction. Nothing in the live DB changes
before this step.
"""

from __future__ import annotations

import time

from sqlalchemy import text

from ..database import migrations as mig
from ..database.drift import accept_hint, describe, live_drift, parse_tokens, record, select
from ..database.reference import reference
from ..database.typeorm_journal import DEFAULT_TABLE, check_table_name, mark_journal, read_typeorm
from ..errors import GateRefused
from ..schema.typeorm import TypeOrmHistoryError, revision_for_typeorm, typeorm_for_revision
from ..database.applied import APPLIED_DDL, file_hashes
from ..plan import AdoptPlan
from . import step


@step("adopt_check")
def adopt_check(ctx):
    env, access = ctx.env, ctx.access
    table = check_table_name(ctx.options.get("table") or DEFAULT_TABLE)
    report = ctx.state.plan = AdoptPlan(env=env.name, database=access.db.name, typeorm_table=table)
    with access.engine().connect() as conn:
        if conn.execute(text("select to_regclass('public.alembic_version')")).scalar():
            cur = mig.current(conn)
            raise GateRefused(
                f"database {access.db.name} of env {env.name!r} is already managed by Alembic "
                f"(alembic_version says {cur or 'empty'}); nothing to adopt, nothing changed",
                "use `invoke status` and `invoke deploy`",
            )
        rows = read_typeorm(conn, table)  # ordered by timestamp, as TypeORM orders them
    report.typeorm_names = [r["name"] for r in rows]
    try:
        rev = revision_for_typeorm([(r["timestamp"], r["name"]) for r in rows])
    except TypeOrmHistoryError as e:
        report.refused_names = e.names
        raise GateRefused(f"cannot adopt: TypeORM table {table!r}: {e}; nothing changed",
                          f"{table!r} must list exactly the guide's first N migrations, by their exact names "
                          "(see src/vetai_ops/schema/typeorm.py); fix the table or the database, then run "
                          "`invoke adopt` again", report=report.to_json()) from None
    if rev is None:
        raise GateRefused(f"TypeORM's {table!r} table is empty: no migration was applied; nothing changed",
                          "for an empty database run `invoke deploy` instead")
    last = typeorm_for_revision(rev)
    report.typeorm_last, report.typeorm_applied, report.revision = last.name, len(rows), rev
    ctx.emit("info", f"TypeORM applied {len(rows)} migrations, last {last.name} = Alembic revision {rev}")

    # the reference schema: what the history builds at `rev` (cached), against the live catalog
    t0 = time.monotonic()
    with access.engine().connect() as conn:
        expected, info = reference(access, rev, conn=conn, emit=ctx.emit)
        diffs = live_drift(conn, expected, ignore={table})
    new = [d for d in diffs if not d.accepted]
    chosen, unused = select(new, parse_tokens(ctx.options.get("accept_drift")))
    for t in unused:
        ctx.emit("warning", f"--accept-drift={t} names no difference of the live schema (ignored)")
    refused = [d for d in new if d not in chosen]
    ctx.state.drift_accepting = chosen
    accepting = {d.key for d in chosen}
    report.differences = [str(d) for d in diffs]
    report.drift = [{**d.to_dict(), "accepted": d.accepted or d.key in accepting} for d in diffs]
    report.compare_s, report.reference_cached = round(time.monotonic() - t0, 3), info["cached"]
    report.tables = len(expected["tables"])
    if refused:
        raise GateRefused(
            f"the live schema of {access.db.name} does not match Alembic revision {rev} "
            f"(TypeORM {last.name}); {len(refused)} difference(s), nothing changed:{describe(refused)}",
            "bring the schema in line with that migration (or find which TypeORM migration it really is at), "
            "then run `invoke adopt` again; " + accept_hint(refused),
            report=report.to_json(),
        )
    return (f"live schema matches revision {rev}: {len(expected['tables'])} tables compared"
            + (f"; accepting {len(chosen)} difference(s): {', '.join(d.id for d in chosen)}" if chosen else ""))


@step("adopt_stamp")
def adopt_stamp(ctx):
    report, access = ctx.state.plan, ctx.access
    if not isinstance(report, AdoptPlan):
        raise GateRefused("adopt_stamp needs adopt_check before it in the playbook; nothing changed")
    rev = report.revision
    files = file_hashes()
    ctx.state.db_touched = True  # from here the run is journaled in deploy_history
    with access.engine().begin() as conn:
        conn.execute(text(APPLIED_DDL))
        for r in mig.chain(None, rev):
            fname, sha = files[r]
            conn.execute(text("INSERT INTO vetai_ops_applied (revision, file, sha256) VALUES (:r, :f, :s)"
                              " ON CONFLICT (revision) DO NOTHING"), {"r": r, "f": fname, "s": sha})
        if report.typeorm_table != DEFAULT_TABLE:
            mark_journal(conn, report.typeorm_table)
        if ctx.state.drift_accepting:  # recorded with the stamp, in its transaction
            record(conn, ctx.state.drift_accepting, by=ctx.operator, revision=rev, action="adopt", run_id=ctx.run_id)
        mig.stamp(conn, rev)
        now_rev = mig.current(conn)
    if now_rev != rev:
        raise GateRefused(f"stamp did not take: database reports revision {now_rev}, expected {rev}")
    report.ok, report.stamped, report.head, report.pending = True, rev, mig.head(), mig.chain(rev, mig.head())
    ctx.state.from_rev, ctx.state.to_rev = None, rev
    return f"stamped {rev}"
