"""Rehearse: run the pending revisions on a copy of production's data before the live database.

After the backup, and before anything touches the live database:

1. restore this run's backup into a scratch database ``<db>_rehearse_<id>`` on the same
   server (the restore primitive rollback and ``backups.verify`` use: sha256 checked,
   nothing but the new database written);
2. Alembic upgrade of the copy to the target, one transaction per revision, with the live
   migration's ``lock_timeout`` / ``statement_timeout``, each revision timed;
3. the post-checks of the database on the copy: revision == target, the schema compared
   with the reference the history builds at target (accepted drift passes), no table lost rows (exact counts before and after, within
   ``checks.row_count_tolerance``; skipped with ``checks.row_counts: false``);
4. drop the copy, always; record the restore in the backup's manifest (estimates) and the
   per-revision durations in the journal (this step's ``detail`` in deploy_history).

A failure stops the deploy with exit 2 (:class:`RehearsalFailed`): the live database was
not migrated, not swapped, not restored (``db_changed`` is never set here, so on_failure
does not run); the report names the revision and the error. Whether it runs was decided by
the plan (validate/datadep.py: ``deploy.rehearsal``, ``--no-rehearsal``).
"""

from __future__ import annotations

import time

from ..database import migrations as mig
from ..database.applied import file_hashes
from ..database.drift import drift_at
from ..database.introspect import drop_database, row_counts
from ..database.swap import rehearsal_name
from ..errors import GateRefused, short_error
from ..plan import DeployPlan
from ..secrets import redact
from . import route, step


class RehearsalFailed(GateRefused):
    """The pending revisions failed on a copy of the data: the live database was not touched
    (exit 2, a refusal that changed nothing live; the scratch copy is dropped)."""


def _migrate_copy(ctx, engine, target: str, timings: list[dict]) -> None:
    """Upgrade the copy to ``target`` the way migrate upgrades the live database; each
    revision's timing is appended to ``timings`` (those applied before a failure too)."""
    clock = {"t": time.monotonic()}

    def on_version_apply(*, ctx, step, heads, run_args):  # noqa: ARG001 - alembic's signature
        now = time.monotonic()
        dur = round(now - clock["t"], 3)
        clock["t"] = now
        timings.append({"revision": step.up_revision_id, "duration_s": dur})
        run.emit("info", f"rehearsed {step.up_revision_id} {dur:.2f}s", revision=step.up_revision_id, duration_s=dur)

    run = ctx
    db = ctx.env.database
    with engine.connect() as conn:
        mig.set_timeouts(conn, db.lock_timeout, db.statement_timeout)
        mig.upgrade(conn, target, on_version_apply=on_version_apply)


def _check_copy(ctx, engine, target: str, rows_before: dict[str, int]) -> list[str]:
    problems = []
    with engine.connect() as conn:
        cur = mig.current(conn)
        if cur != target:
            problems.append(f"the copy is at revision {cur or 'base'}, expected {target}")
        else:  # the post-check's schema comparison: the reference the history builds at target
            diffs, _ = drift_at(ctx.access, conn, target, emit=ctx.emit)
            new = [d for d in diffs if not d.accepted]
            if new:
                problems.append(f"the copy's schema differs from the history at {target} ({len(new)} unaccepted "
                                "difference(s)): " + "; ".join(str(d) for d in new[:10]))
        if rows_before:
            tol = ctx.env.checks.row_count_tolerance
            after = row_counts(conn, exclude=("deploy_history",))
            for table, n in rows_before.items():
                if table in after and after[table] < n * (1 - tol):
                    problems.append(f"table {table} lost rows on the copy: {n} before, {after[table]} after")
    return problems


@step("rehearse")
def rehearse(ctx):
    decision = ctx.state.rehearsal
    if not decision.get("will"):
        return f"not run: {decision.get('why') or 'not planned'}"
    m = ctx.state.backup
    if m is None:  # the plan refuses `always` without a backup; a custom playbook could still get here
        raise GateRefused("a rehearsal needs this run's backup, and none was taken; nothing changed",
                          "put the backup step before rehearse in the playbook")
    from ..transfer.restore import restore_into  # the one restore primitive (rollback, verify, rehearsal)

    access, target, pending = ctx.access, ctx.state.to_rev, list(ctx.state.pending)
    scratch = rehearsal_name(access.db.name, m.id)
    maint = access.admin
    t0 = time.monotonic()
    rec: dict = {"backup_id": m.id, "scratch_db": scratch, "target": target, "revisions": [], "ok": False}
    failed_rev, error = None, None
    applied: list[dict] = []
    try:
        ctx.emit("info", f"rehearsal: restoring backup {m.id} into {scratch} on {ctx.db_target.name}")
        timings = restore_into(route(ctx), m, scratch, maint)
        rec.update(restore_s=timings["restore_s"], verify_s=timings["verify_s"], mode=timings.get("mode"))
        engine = access.engine(scratch)
        try:
            with engine.connect() as conn:
                rows_before = row_counts(conn, exclude=("deploy_history",)) if ctx.env.checks.row_counts else {}
            t_mig = time.monotonic()
            try:
                _migrate_copy(ctx, engine, target, applied)
            except Exception as e:  # noqa: BLE001 - the revision that failed is the one after the last applied
                done = [t["revision"] for t in applied]
                failed_rev = next((r for r in pending if r not in done), pending[-1] if pending else None)
                error = redact(short_error(e))
            rec["migrate_s"] = round(time.monotonic() - t_mig, 3)
            rec["revisions"] = list(applied)
            if error is None:
                problems = _check_copy(ctx, engine, target, rows_before)
                if problems:
                    failed_rev, error = f"post-check after {target}", "; ".join(problems)
        finally:
            engine.dispose()
    except Exception as e:  # noqa: BLE001 - the copy could not be made: that is the rehearsal's failure too
        failed_rev, error = failed_rev or "restore of the copy", redact(short_error(e))
    finally:
        try:
            drop_database(maint, scratch)
            rec["dropped"] = True
        except Exception as e:  # noqa: BLE001 - named; the next run under the lock drops it (database/swap.py repair)
            rec["dropped"] = False
            ctx.emit("warning", f"could not drop the rehearsal copy {scratch}: {redact(short_error(e))}")
    rec.update(total_s=round(time.monotonic() - t0, 3), ok=error is None, failed_revision=failed_rev, error=error)
    detail = ctx.state.step_detail = {k: rec.get(k) for k in ("backup_id", "ok", "revisions", "restore_s", "migrate_s",
                                                        "total_s", "failed_revision", "error", "dropped")}
    if rec.get("restore_s") is not None:
        try:
            ctx.catalog.add_restore(m.id, {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                           "kind": "rehearsal", "ok": rec["ok"], "run_id": ctx.run_id,
                                           "restore_s": rec["restore_s"], "verify_s": rec.get("verify_s"),
                                           "total_s": rec["total_s"]})
        except Exception as e:  # noqa: BLE001 - estimates only
            ctx.emit("warning", f"could not record the rehearsal in backup {m.id}'s manifest: {short_error(e)}")
    if error is not None:
        files = file_hashes()
        name = files.get(failed_rev, (None,))[0]
        raise RehearsalFailed(
            f"the rehearsal on a copy of backup {m.id} failed at revision {failed_rev}"
            + (f" ({name})" if name else "") + f": {error}; the live database was not touched (not migrated, "
            f"not swapped, nothing restored) and the copy {scratch} was "
            + ("dropped" if rec.get("dropped") else "NOT dropped (the next run drops it)"),
            "fix the revision (the data it meets is production's: make it handle those rows), then deploy again",
            rehearsal=detail,
        )
    plan = ctx.state.plan
    if isinstance(plan, DeployPlan):  # what the confirmation of a protected env shows: measured, not guessed
        from ..store.estimates import estimates

        plan.estimates, plan.migrate_by_revision = estimates(ctx.catalog.list(), ctx.state.history_rows, pending,
                                                             ctx.state.db_size, rehearsal=rec)
        plan.rehearsal = {**plan.rehearsal, "result": detail}
    ctx.emit("rehearsal", "", **detail)
    per = ", ".join(f"{t['revision']} {t['duration_s']:.2f}s" for t in rec["revisions"])
    return f"{len(rec['revisions'])} revisions on a copy of {m.id} in {rec['total_s']:.1f}s ({per}); copy dropped"
