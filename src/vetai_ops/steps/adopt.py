"""Adopt a database built by the backend's TypeORM migrations (``invoke adopt``).

``adopt_check``: refuse when the database already has ``alembic_version``, has no TypeORM
``migrations`` table, or that table names migrations that are not a prefix of the guide's
13 (:func:`vetai_ops.schema.typeorm.revision_for_typeorm`); compare the live schema with
the reference the history builds at the equivalent revision (:mod:`vetai_ops.database.reference`,
cached) and refuse on any difference, naming it, unless ``--accept-drift`` names it.
Its report becomes the plan ``confirm`` shows.

``adopt_stamp``: ``alembic stamp <revision>``, the Flyway-style hashes of the adopted
revisions in ``vetai_ops_applied`` and the accepted drift (who, when) in
``vetai_ops_accepted_drift``, in one transaction. Nothing in the live DB changes before
this step.
"""

from __future__ import annotations

import time

from sqlalchemy import text

from ..database import migrations as mig
from ..database.drift import accept_hint, describe, live_drift, parse_tokens, record, select
from ..database.reference import reference
from ..database.schema_compare import read_typeorm
from ..errors import GateRefused
from ..schema.typeorm import TYPEORM_MIGRATIONS, revision_for_typeorm
from . import step
from .validate import APPLIED_DDL


@step("adopt_check")
def adopt_check(ctx, **_):
    env, access = ctx.env, ctx.access
    report: dict = {"env": env.name, "database": access.db.name, "ok": False, "differences": []}
    ctx.state["adopt"] = report
    with access.engine().connect() as conn:
        if conn.execute(text("select to_regclass('public.alembic_version')")).scalar():
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

    # the reference schema: what the history builds at `rev` (cached), against the live catalog
    t0 = time.monotonic()
    with access.engine().connect() as conn:
        expected, info = reference(access, rev, conn=conn, emit=ctx.emit)
        diffs = live_drift(conn, expected)
    journal = (ctx.options.get("table") or "migrations")
    # TypeORM's journal under its own name (migrationsTableName) stays: accepted as drift, with a record
    kept = [d for d in diffs if d.kind == "table" and d.name == journal and not d.accepted]
    new = [d for d in diffs if not d.accepted and d not in kept]
    chosen, unused = select(new, parse_tokens(ctx.options.get("accept_drift")))
    for t in unused:
        ctx.emit("warning", f"--accept-drift={t} names no difference of the live schema (ignored)")
    refused = [d for d in new if d not in chosen]
    ctx.state["drift_accepting"] = kept + chosen
    accepting = {d.key for d in kept + chosen}
    report.update(differences=bad_ts + [str(d) for d in diffs],
                  drift=[{**d.to_dict(), "accepted": d.accepted or d.key in accepting} for d in diffs],
                  compare_s=round(time.monotonic() - t0, 3), reference_cached=info["cached"],
                  tables=len(expected["tables"]))
    if bad_ts or refused:
        shown = describe(refused) if refused else ""
        raise GateRefused(
            f"the live schema of {access.db.name} does not match Alembic revision {rev} "
            f"(TypeORM {last.name}); {len(bad_ts) + len(refused)} difference(s), nothing changed:"
            + ("\n  - " + "\n  - ".join(bad_ts) if bad_ts else "") + shown,
            (accept_hint(refused) if refused and not bad_ts else
             "bring the schema in line with that migration (or find which TypeORM migration it really is at), "
             "then run `invoke adopt` again"),
            report=report,
        )
    ctx.state["plan"] = report  # what confirm shows on a protected env
    return (f"live schema matches revision {rev}: {len(expected['tables'])} tables compared"
            + (f"; accepting {len(accepting)} difference(s): {', '.join(d.id for d in kept + chosen)}" if accepting else ""))


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
        if ctx.state.get("drift_accepting"):  # recorded with the stamp, in its transaction
            record(conn, ctx.state["drift_accepting"], by=ctx.operator, revision=rev, action="adopt", run_id=ctx.run_id)
        mig.stamp(conn, rev)
        now_rev = mig.current(conn)
    if now_rev != rev:
        raise GateRefused(f"stamp did not take: database reports revision {now_rev}, expected {rev}")
    report.update(ok=True, stamped=rev, head=mig.head(), pending=mig.chain(rev, mig.head()))
    ctx.state.update(from_rev=None, to_rev=rev)
    return f"stamped {rev}"
