"""Restore: never touch the live DB until the restored copy is proven.

1-2. ``pg_restore`` into a new database ``<db>_restore_<id>``. pg_restore reads only bytes
   whose integrity is already proven (issue 12: it runs the dump's SQL), by one of (see
   :func:`restore_plan`; measured in bench/README.md):
   - ``file``: the store's own file when host and store are this machine and it is
     uncompressed: size and sha256 checked first, then ``pg_restore -j N`` on it;
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

import hashlib
import time

from sqlalchemy import text

from ..database import migrations as mig
from ..errors import ChecksumMismatch, CommandFailed, OpsError, StoreError, short_error
from . import step
from ..database import dbprops, retired, writestats
from ..database import swap as dbswap
from ..database.introspect import drop_database, new_database, public_tables
from ..targets import has_command
from ..targets.stall import StallWatch
from ..units import human_bytes
from ..transfer import Every

CHUNK = 1 << 20
# restore_plan: pg_restore single job below these, -j N above
ONE_JOB_MAX_CORES = 2  # on 2 cores, -j2 gains little (bench/README.md)
ONE_JOB_BELOW_BYTES = 64 << 20  # small dumps: worker start-up dominates


def restore_plan(ctx, m) -> tuple[str, int]:
    """(mode, jobs): ``file`` (store file on this machine) or ``spool``."""
    target, cfg = ctx.db_target, ctx.env.backup.restore_jobs
    if target.host_path(ctx.store.local_path(m.dump_key)) and m.compression in ("gzip", "none"):
        return "file", cfg or max(1, min(8, target.cpu_count()))
    if cfg is not None:
        return "spool", max(1, cfg)
    cores = target.cpu_count()
    if cores <= ONE_JOB_MAX_CORES or m.size < ONE_JOB_BELOW_BYTES:
        return "spool", 1
    return "spool", max(1, min(8, cores))


def _decoder(target, m, host_decoder: list[str]) -> tuple[list[str] | None, object | None]:
    """How a zstd backup is decompressed: on the host when it has zstd (its own core, returns
    the argv to put in front), else here (returns a zstandard decompressobj). Others: neither."""
    if m.compression != "zstd":
        return None, None
    if has_command(target, "zstd"):
        return host_decoder, None
    import zstandard

    return None, zstandard.ZstdDecompressor().decompressobj()


def _pump(ctx, m, src, proc, dec) -> tuple[str, int, list[BaseException]]:
    """Copy the stored bytes of ``m`` into ``proc.stdin`` (through ``dec`` when given), one
    chunk at a time, hashing every stored byte. A write or decoder failure stops the writing
    but not the hashing, so a corrupt backup is reported as corrupt whatever broke first.
    Returns (sha256 hex of the stored bytes, their count, failures)."""
    sha = hashlib.sha256()
    moved = 0
    tick = Every(ctx.progress)
    broken: list[BaseException] = []
    # no byte read or written for backup.stall_timeout: the process is killed, the run told so
    watch = StallWatch(proc, ctx.env.backup.stall_timeout, f"the restore stream of backup {m.id} into {ctx.db_target.name}")
    try:
        for b in iter(lambda: src.read(CHUNK), b""):
            watch.tick()
            sha.update(b)
            moved += len(b)
            if not broken:
                try:
                    proc.stdin.write(dec.decompress(b) if dec is not None else b)
                    watch.tick()
                except Exception as e:  # noqa: BLE001 - broken pipe, decoder error: hash on
                    broken.append(e)
            watch.check("the live database was not touched")
            tick("restore", moved, m.size, id=m.id)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        watch.close()
    tick.final()
    return sha.hexdigest(), moved, broken


SPOOL_PREFIX = "/tmp/vetai-ops-spool-"  # + "<database>." + random: '.' is never in a database name


def _spool_glob(ctx) -> str:
    return f"{SPOOL_PREFIX.rsplit('/', 1)[1]}{ctx.access.db.name}.*"


def remove_spool(target, folder: str | None) -> None:
    """Remove a spool folder on the DB host (best effort: never hides the run's own outcome)."""
    if folder and folder.startswith(SPOOL_PREFIX):
        try:
            target.run(["rm", "-rf", "--", folder], check=False)
        except Exception:  # noqa: BLE001 - a lost link: the next run removes it
            pass


def _remove_dead_spools(ctx, target) -> None:
    """Spool folders of this database left by runs that died. Only under the env's lock: then
    no other run of this database can be using one."""
    if ctx.state.get("lock") is None:
        return
    target.run(["find", "/tmp", "-maxdepth", "1", "-type", "d", "-name", _spool_glob(ctx),
                "-exec", "rm", "-rf", "--", "{}", "+"], check=False)
    # older versions spooled into a world-readable /tmp/vetai-ops-XXXXXXXXXX.dump (no database
    # in its name): one untouched for a day is a dead run's, whichever database it held
    target.run(["find", "/tmp", "-maxdepth", "1", "-type", "f", "-name", "vetai-ops-??????????.dump",
                "-mmin", "+1440", "-delete"], check=False)


def _spool_folder(ctx, target) -> str:
    """A fresh private (0700) folder in the DB host's /tmp for one spool file."""
    res = target.run(["mktemp", "-d", f"{SPOOL_PREFIX}{ctx.access.db.name}.XXXXXXXXXX"])
    folder = res.text.strip()
    if not folder.startswith(SPOOL_PREFIX) or "\n" in folder:
        raise OpsError(f"mktemp -d on {target.name} returned an unexpected path {folder[:120]!r}")
    return folder


def materialise(ctx, m) -> tuple[str, str | None]:
    """A verified, seekable custom-format archive on the DB host. Returns (path, spool folder
    to remove afterwards, or None when ``path`` is the store's own file)."""
    target, store = ctx.db_target, ctx.store
    on_host = target.host_path(store.local_path(m.dump_key))
    if on_host and m.compression in ("gzip", "none"):  # the stored file itself, verified in place
        sha, n = hashlib.sha256(), 0
        with store.open_read(m.dump_key) as f:
            for b in iter(lambda: f.read(CHUNK), b""):
                sha.update(b)
                n += len(b)
        _check(m, sha.hexdigest(), ctx, n)
        return on_host, None
    _remove_dead_spools(ctx, target)
    free = target.free_bytes("/tmp")
    if free < m.size * (4 if m.compression == "zstd" else 1.1):
        raise OpsError(
            f"not enough room on {target.name} to spool the backup: {free // 2**20} MiB free in /tmp",
            "free space on the DB host",
        )
    folder = _spool_folder(ctx, target)
    path = f"{folder}/backup.dump"
    host_dec, dec = _decoder(target, m, ["zstd", "-d", "-q", "-c"])
    # the shell creates the file (noclobber: never an existing one) 0600 under umask 077, in a
    # 0700 folder; `zstd -o` would replace it with a file of its own mode
    writer = ["sh", "-c", 'umask 077 && set -C && exec "$@" > "$0"', path, *(host_dec or ["cat"])]
    try:
        with store.open_read(m.dump_key, etag=m.etag, version_id=m.version_id) as src:  # what the manifest pinned
            proc = target.start(writer, stdin=True)
            digest, moved, broken = _pump(ctx, m, src, proc, dec)
            rc = proc.wait()
            if rc != 0 and not broken:
                broken.append(CommandFailed(f"writing the restore spool on {target.name} failed: {proc.stderr_text()[-400:]}"))
        _check(m, digest, ctx, moved)  # a corrupt backup is reported as such, whatever broke first
        if broken:
            raise OpsError(f"could not prepare backup {m.id} on {target.name}: {broken[0]}; the live database was not touched")
    except BaseException:
        remove_spool(target, folder)
        raise
    return path, folder


def _check(m, got: str, ctx, size: int | None = None) -> None:
    if size is not None and size != m.size:
        raise ChecksumMismatch(
            f"backup {m.id} is corrupt: {ctx.store.url(m.dump_key)} has {size} bytes, manifest says {m.size};"
            " the live database was not touched",
            "restore another backup (`invoke backups.list`)",
        )
    if got != m.sha256:
        raise ChecksumMismatch(
            f"backup {m.id} is corrupt: sha256 of {ctx.store.url(m.dump_key)} is {got[:16]}..., manifest says "
            f"{m.sha256[:16]}...; the live database was not touched",
            "restore another backup (`invoke backups.list`)",
        )


def database_props(ctx, m) -> dict | None:
    """The database-level properties a copy of ``m`` gets (database/dbprops.py): the manifest's,
    or for a manifest older than them, the live database's own as the app sees it now."""
    if getattr(m, "database_props", None):
        return m.database_props
    try:
        with ctx.access.admin_engine().connect() as c:
            return dbprops.capture(c, ctx.access.db.name)
    except Exception:  # noqa: BLE001 - no live database to ask: a plain copy
        return None


def restore_into(ctx, m, dbname: str, maint=None, props: dict | None = None) -> dict:
    """Materialise backup ``m`` (sha256 verified) and ``pg_restore -j N`` it into a NEW
    database ``dbname`` on the DB host, created with the recorded encoding and locale;
    objects keep their owners and grants (no --no-owner / --no-acl: the preflight proved the
    role can). Never touches any other database. On any failure ``dbname`` is dropped; the
    spool file (if any) is always removed. Returns timings."""
    access, target = ctx.access, ctx.db_target
    maint = maint or access.admin_engine()
    props = props if props is not None else database_props(ctx, m)
    t0 = time.monotonic()
    mode, jobs = restore_plan(ctx, m)
    path, spool = materialise(ctx, m)
    t_verified = time.monotonic()
    try:
        with new_database(maint, dbname, props):
            argv = [access.bin("pg_restore"), "--exit-on-error", "--no-password", f"--jobs={jobs}",
                    *access.pg_args(dbname), path]
            ctx.emit("info", f"pg_restore -j {jobs} into {dbname} on {target.name}")
            with access.pg_env() as penv:
                res = target.run(argv, env=penv, check=False)
            if res.returncode != 0:
                raise CommandFailed(
                    f"pg_restore into {dbname} failed on {target.name} (exit {res.returncode}): {res.stderr.strip()[-600:]}",
                    returncode=res.returncode,
                )
    finally:
        remove_spool(target, spool)
    return {"verify_s": round(t_verified - t0, 3), "restore_s": round(time.monotonic() - t_verified, 3), "mode": mode}


def inspect_copy(access, dbname: str) -> tuple[str | None, set[str]]:
    """(Alembic revision, public tables) of database ``dbname``."""
    eng = access.engine(dbname)
    try:
        with eng.connect() as c:
            rev = mig.current(c)
            tables = set(public_tables(c))
    finally:
        eng.dispose()
    return rev, tables


def restore_backup(ctx, m) -> dict:
    """Restore manifest ``m`` over the env's live database. Returns a summary dict."""
    access = ctx.access
    live = access.db.name
    scratch = dbswap.restore_name(live, m.id)
    maint = access.admin_engine()
    props = database_props(ctx, m)
    warm = _warm_postcheck(ctx, m)
    try:
        timings = restore_into(ctx, m, scratch, maint, props=props or {})
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
        from ..store.catalog import new_id

        before = retired.unused_name(maint, live, m.id, new_id())
        if ctx.state.get("fence_before_swap"):  # a read_only write fence holds on the copy too
            ctx.state["fence_before_swap"](maint, scratch)
        _lock_before_swap(ctx)
        swap(ctx, maint, live, scratch, before)
    except BaseException:
        # this run's copy never outlives a failed run (a killed one: the next run drops it)
        try:
            drop_database(maint, scratch)
        except Exception:  # noqa: BLE001
            pass
        raise
    access.dispose()
    _writes_discarded(ctx, before, m)
    _after_swap(ctx, maint, before, m)
    return {
        "id": m.id,
        "previous_db": before,
        "verify_s": timings["verify_s"],
        "restore_s": timings["restore_s"],
        "swap_s": round(time.monotonic() - t_restored, 3),
    }


def _warm_postcheck(ctx, m):
    """While pg_restore loads the copy (the operator only pumps bytes meanwhile), load what the
    post-check will need (Alembic, the history's hashes, the cached reference schema at the
    backup's revision) in a thread. Best effort and read-only: whatever it misses, the
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
    lk = ctx.state.get("lock")
    if lk is None:
        return
    retaken = lk.ensure("the swap", retake=bool(ctx.state.get("recovering")))
    if retaken:
        ctx.emit("warning", retaken)


def _writes_discarded(ctx, before: str, m) -> None:
    """Report the writes since backup ``m`` began that the restore set aside: the retired
    database's write counters (complete: the swap ended its sessions, which flushes their
    counters) against the manifest's. Best effort: the swap is done whatever this says."""
    ctx.state["kept_as"] = before
    own = ctx.state.get("own_writes") if ctx.state.get("backup_manifest") is m else None
    eng = ctx.access.engine(before)
    try:
        with eng.connect() as c:
            writes, notes = writestats.since(m.write_stats, writestats.snapshot(c), own)
    except Exception as e:  # noqa: BLE001
        writes, notes = None, [f"could not read the write statistics of {before}: {short_error(e)}"]
    finally:
        eng.dispose()
    ctx.state.update(writes_since_backup=writes, writes_notes=notes)
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


def _after_swap(ctx, maint, before: str, m) -> None:
    """Best effort, the swap is done: stamp the retired database with the time it was retired
    (prune ages it by that), and carry the journal of the runs since the backup into the
    restored database (they live on only in the retired one)."""
    from ..journal import carry_history

    try:
        retired.mark_retired(maint, before, m.id)
    except Exception as e:  # noqa: BLE001
        ctx.emit("warning", f"could not mark {before} with its retirement time: {short_error(e)}")
    old = ctx.access.engine(before)
    try:
        n = carry_history(old, ctx.access.engine())
        if n:
            ctx.emit("info", f"{n} deploy_history row(s) of runs since backup {m.id} carried over from {before}")
    except Exception as e:  # noqa: BLE001
        ctx.emit("warning", f"could not carry deploy_history over from {before}: {short_error(e)}")
    finally:
        old.dispose()


def swap(ctx, maint, live: str, scratch: str, before: str) -> None:
    """Both renames in one transaction (:func:`vetai_ops.database.swap.swap_in`): on any
    failure nothing is renamed and the live database is as it was."""
    dbswap.swap_in(maint, live, scratch, before, emit=lambda kind, msg: ctx.emit(kind, msg))
    ctx.state["db_changed"] = True  # committed: the live name is the restored copy
    ctx.emit("info", f"swapped: {live} is the restored copy; the previous one is kept as {before}")


@step("restore")
def restore(ctx, backup: str | None = None):
    """Restore ``--to`` (rollback) or, with backup=this_run, the backup this run made."""
    if backup == "this_run":
        m = ctx.state.get("backup_manifest")
        if m is None:
            raise StoreError("no backup was taken by this run; nothing to restore")
    else:
        # signed backups only, unless --trust-unsigned on an unprotected env (store/catalog.py);
        # the one the confirm step selected is read again by its id (no second listing), its
        # trust checked again
        bid = ctx.state.get("rollback_id")
        trust = bool(ctx.options.get("trust_unsigned"))
        m = (ctx.catalog.complete(bid, trust_unsigned=trust) if bid
             else ctx.catalog.resolve(ctx.options.get("to"), trust_unsigned=trust))
        if not m.signed:
            ctx.emit("warning", f"restoring backup {m.id}, which is not signed ({m.trust}), on --trust-unsigned")
        plan = ctx.state.get("plan") or {}
        ctx.state["from_rev"] = plan["from"] if bid and "from" in plan else _current_or_none(ctx)
        _refuse_unless_recoverable(ctx, m)  # the auto-recovery's run proved it in its preflight
    ctx.state["db_touched"] = True
    ctx.emit("info", f"restoring backup {m.id} (revision {m.revision or 'base'}, {human_bytes(m.size)}) from {ctx.store.url(m.dump_key)}")
    t0 = time.monotonic()
    summary = restore_backup(ctx, m)
    ctx.state.update(restored_id=m.id, to_rev=m.revision, expect_rev=m.revision, restore_summary=summary)
    _record(ctx, m, "recovery" if backup == "this_run" else "rollback", summary, round(time.monotonic() - t0, 3))
    if backup != "this_run":
        ctx.state["backup_url"] = ctx.store.url(m.dump_key)
    return f"{m.id} restored (previous DB kept as {summary['previous_db']})"


def _refuse_unless_recoverable(ctx, m) -> None:
    """A rollback asks what a deploy's preflight asks, before it restores anything: the rights
    to restore ``m`` as it was (its objects' owners, the database's settings) and room for the
    copy. Refuses (exit 2) naming each missing right with its GRANT."""
    from ..database.rights import object_owners, refuse_unless_recoverable

    access = ctx.access
    owners = m.object_owners
    if owners is None:  # a manifest older than the record: the live database's owners
        with access.engine().connect() as c:
            owners = object_owners(c)
    with access.admin_engine().connect() as c:
        size = c.execute(text("SELECT pg_database_size(:d)"), {"d": access.db.name}).scalar() or 0
        summary = refuse_unless_recoverable(c, access.db.name, owners=owners, props=database_props(ctx, m),
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
        with ctx.access.engine().connect() as c:
            return mig.current(c)
    except Exception:  # noqa: BLE001
        return None
