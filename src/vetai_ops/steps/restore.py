"""Restore: never touch the live DB until the restored copy is proven.

1-2. ``pg_restore`` into a new database ``<db>_restore_<id>`` (:func:`vetai_ops.transfer.restore.restore_into`,
   shared with verify and rehearse). pg_restore reads only bytes
   whose integrity is already proven (issue 12: it runs the dump's SQL), by one of (see
   :func:`vetai_ops.transfer.restore.restore_plan`; measured in bench/README.md):
   - ``file``: the store's own file when host and store are this machine and it is
     uncompressed: size and sha256 checked first, then ``pg_restore -j N`` on it;
   - ``pipe``: a zstd backup restored by one job: its compressed bytes verified (in place,
     or spooled as they are), then ``zstd -d -c file | pg_restore``;
   - ``spool`` (everything else): the stored object, read as the manifest pinned it (S3:
     If-Match its ETag, and its VersionId in a versioned bucket), spooled to the DB host's
     /tmp (free space checked), decompressed on the way while the size and sha256 are
     computed; only when both match the manifest does ``pg_restore -j N`` start (one job
     on hosts with <= 2 cores and for small dumps, else the host's cores, or
     ``backup.restore_jobs``). A mismatch removes the spool; no database was created.
     The spool is a 0600 file in a fresh 0700 folder (``mktemp -d``), written under
     umask 077 into that folder and removed on every exit path; folders left by runs
     that died (SIGKILL, a dropped link) are removed by the next run holding the env's lock.
   (A ``stream`` mode that piped the store into pg_restore, checking the sha256 only at
   the end, was removed: pg_restore executed the SQL of bytes not yet verified.)
3. check it: Alembic revision == manifest, every table of the manifest present.
4. swap by rename, in ONE transaction (database/swap.py): terminate sessions, live ->
   ``<db>_before_<id>``, restored -> live, commit. A failure or a dead operator at any
   point leaves the live DB as it was; the scratch DB is dropped by this run, or by the
   next one (under the env's lock, :func:`vetai_ops.database.swap.repair`).
"""

from __future__ import annotations

import time

from ..database import migrations as mig
from ..errors import OpsError, StoreError, short_error
from ..plan import RollbackPlan, RunPlan
from . import route, step
from ..database import dbprops, writestats
from ..database import swap as dbswap
from ..database.introspect import drop_database
from ..transfer.restore import database_props, inspect_copy, restore_into
from ..units import human_bytes


def restore_backup(ctx, m) -> dict:
    """Restore manifest ``m`` over the env's live database. Returns a summary dict."""
    access = ctx.access
    live = access.db.name
    scratch = dbswap.restore_name(live, m.id)
    maint = access.admin
    props = database_props(access, m)
    warm = _warm_postcheck(ctx, m)
    try:
        timings = restore_into(route(ctx), m, scratch, maint, props=props or {})
    finally:
        warm.join()  # before the copy is inspected or swapped in: no other session of ours is open
    try:
        # prove the copy before the swap
        rev, tables = inspect_copy(access, scratch)
        if rev != m.revision:
            raise OpsError(f"restored copy is at revision {rev}, manifest says {m.revision}; live DB untouched")
        missing = sorted(set(m.tables) - tables)
        if missing:
            raise OpsError(f"restored copy lacks tables {', '.join(missing)}; live DB untouched")
        if props:  # the database's own grants, settings, comment: the same database to the app
            n = dbprops.apply(maint, scratch, props)
            ctx.emit("info", f"{scratch}: database owner, grants, settings and comment as at backup {m.id} ({n} statements)")
        t_restored = time.monotonic()

        def before_swap() -> None:
            for hook in ctx.state.before_swap:  # a read_only write fence holds on the copy too
                hook(maint, scratch)
            _lock_before_swap(ctx)

        # the name the operator was shown (a rollback's plan), when it is still free
        plan = ctx.state.plan
        planned = plan.kept_as if isinstance(plan, RollbackPlan) and ctx.state.rollback_id == m.id else None
        before = dbswap.swap_restored(maint, live, scratch, m.id, planned=planned, before_swap=before_swap,
                                      emit=lambda kind, msg: ctx.emit(kind, msg))
        ctx.state.db_changed = True  # committed: the live name is the restored copy
        ctx.emit("info", f"swapped: {live} is the restored copy; the previous one is kept as {before}")
    except BaseException:
        # this run's copy never outlives a failed run (a killed one: the next run drops it)
        try:
            drop_database(maint, scratch)
        except Exception:  # noqa: BLE001
            pass
        raise
    access.dispose()
    _writes_discarded(ctx, before, m)
    dbswap.settle(maint, access, before, m.id, emit=lambda kind, msg: ctx.emit(kind, msg))
    return {
        "id": m.id,
        "previous_db": before,
        "verify_s": timings["verify_s"],
        "restore_s": timings["restore_s"],
        "swap_s": round(time.monotonic() - t_restored, 3),
    }


def _warm_postcheck(ctx, m):
    """While pg_restore loads the copy (the operator only pumps bytes meanwhile), load what the
    post-check will need (the history's lineage, the cached reference schema at the backup's
    revision; Alembic only when the history changed since its lineage was cached) in a thread. Best effort and read-only: whatever it misses, the
    post-check does itself. Returns the thread (joined before the swap)."""
    import threading

    from ..database.reference import warm

    def run():
        try:
            warm(ctx.access, m.revision)
        except Exception:  # noqa: BLE001 - the post-check builds or reports it
            pass

    t = threading.Thread(target=run, name="vetai-ops-warm-postcheck", daemon=True)
    t.start()
    return t


def _lock_before_swap(ctx) -> None:
    """The lock is asked again before the live name changes hands. A recovery (on_failure)
    must finish, so it takes a lost lock again when nobody else holds it; a rollback stops."""
    lk = ctx.state.lock
    if lk is None:
        return
    retaken = lk.ensure("the swap", retake=ctx.state.recovering)
    if retaken:
        ctx.emit("warning", retaken)


def _writes_discarded(ctx, before: str, m) -> None:
    """Report the writes since backup ``m`` began that the restore set aside: the retired
    database's write counters (complete: the swap ended its sessions, which flushes their
    counters) against the manifest's. Best effort: the swap is done whatever this says."""
    ctx.state.kept_as = before
    own = ctx.state.own_writes if ctx.state.backup is m else None
    try:
        with ctx.access.connect(before) as c:
            writes, notes = writestats.since(m.write_stats, writestats.snapshot(c), own)
    except Exception as e:  # noqa: BLE001
        writes, notes = None, [f"could not read the write statistics of {before}: {short_error(e)}"]
    ctx.state.writes_since_backup, ctx.state.writes_notes = writes, notes
    if writes is None:
        ctx.emit("warning", f"writes since backup {m.id} are unknown ({'; '.join(notes)}); whatever was written "
                 f"is kept in {before}", writes_since_backup=None, kept_as=before)
    elif writes:
        ctx.emit("warning", f"writes since backup {m.id} discarded by this restore: {writestats.describe(writes)}"
                 f" (inserted +, updated ~, deleted -; PostgreSQL statistics, an upper bound); they are kept in {before}"
                 + (f"; {'; '.join(notes)}" if notes else ""), writes_since_backup=writes, kept_as=before)
    else:
        ctx.emit("info", f"no writes since backup {m.id} were discarded" + (f" ({'; '.join(notes)})" if notes else ""),
                 writes_since_backup=writes, kept_as=before)


@step("restore")
def restore(ctx, backup: str | None = None):
    """Restore ``--to`` (rollback) or, with backup=this_run, the backup this run made."""
    if backup == "this_run":
        m = ctx.state.backup
        if m is None:
            raise StoreError("no backup was taken by this run; nothing to restore")
    else:
        # signed backups only, unless --trust-unsigned on an unprotected env (store/catalog.py);
        # the one the confirm step selected is read again by its id (no second listing), its
        # trust checked again
        bid = ctx.state.rollback_id
        trust = bool(ctx.options.get("trust_unsigned"))
        m = (ctx.catalog.complete(bid, trust_unsigned=trust) if bid
             else ctx.catalog.resolve(ctx.options.get("to"), trust_unsigned=trust))
        if not m.signed:
            ctx.emit("warning", f"restoring backup {m.id}, which is not signed ({m.trust}), on --trust-unsigned")
        plan = ctx.state.plan  # the rollback's plan read the revision before the operator confirmed
        ctx.state.from_rev = plan.from_rev if bid and isinstance(plan, RunPlan) else _current_or_none(ctx)
        _refuse_unless_recoverable(ctx, m)  # the auto-recovery's run proved it in its preflight
    ctx.state.db_touched = True
    ctx.emit("info", f"restoring backup {m.id} (revision {m.revision or 'base'}, {human_bytes(m.size)}) from {ctx.store.url(m.dump_key)}")
    t0 = time.monotonic()
    summary = restore_backup(ctx, m)
    st = ctx.state
    st.restored_id, st.to_rev, st.expect_rev, st.restore_summary = m.id, m.revision, m.revision, summary
    _record(ctx, m, "recovery" if backup == "this_run" else "rollback", summary, round(time.monotonic() - t0, 3))
    if backup != "this_run":
        ctx.state.backup_url = ctx.store.url(m.dump_key)
    return f"{m.id} restored (previous DB kept as {summary['previous_db']})"


def _refuse_unless_recoverable(ctx, m) -> None:
    """A rollback asks what a deploy's preflight asks, before it restores anything: the rights
    to restore ``m`` as it was (its objects' owners, the database's settings) and room for the
    copy. Refuses (exit 2) naming each missing right with its GRANT."""
    from ..database.rights import object_owners, refuse_unless_recoverable

    access = ctx.access
    owners = m.object_owners
    if owners is None:  # a manifest older than the record: the live database's owners
        with access.connect() as c:
            owners = object_owners(c)
    with access.admin() as c:
        size = c.execute("SELECT pg_database_size(%(d)s)", {"d": access.db.name}).fetchone()[0] or 0
        summary = refuse_unless_recoverable(c, access.db.name, owners=owners, props=database_props(access, m),
                                            size=max(size, m.size), target=ctx.db_target, when="before restoring")
    ctx.emit("info", f"the deploy role can restore {access.db.name} as it was; {summary}")


def _record(ctx, m, kind: str, summary: dict, total_s: float) -> None:
    """The restore's durations in the backup's manifest: the estimates of later plans read
    them (store/estimates.py). Best effort: the restore is done whatever happens here."""
    try:
        ctx.catalog.add_restore(m.id, {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kind": kind, "ok": True,
            "run_id": ctx.run_id, "verify_s": summary.get("verify_s"), "restore_s": summary.get("restore_s"),
            "total_s": total_s})
    except Exception as e:  # noqa: BLE001
        ctx.emit("warning", f"could not record the restore's duration in backup {m.id}'s manifest: {short_error(e)}")


def _current_or_none(ctx):
    try:
        with ctx.access.connect() as c:
            return mig.current(c)
    except Exception:  # noqa: BLE001
        return None
