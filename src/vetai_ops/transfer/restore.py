"""A backup into a NEW database on the DB host: the restore step's copy, verify's scratch
database, the rehearsal's copy. ``pg_restore`` reads only bytes whose size and sha256 match
the manifest (:func:`materialise`, the ``file`` / ``spool`` choice of :func:`restore_plan`).

It works on a :class:`Route` (the DB host, the catalog and its store, the database access,
the backup settings and the run's ``emit`` / ``progress`` callbacks), never on the run's
context.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..database import dbprops
from ..database import migrations as mig
from ..database.activity import RestoreProgress
from ..database.introspect import new_database, public_tables
from ..errors import ChecksumMismatch, CommandFailed, OpsError
from ..targets import has_command, pipeline
from ..targets.stall import StallWatch
from .stream import CHUNK, Every, zstd_decoder


def _quiet(*_a, **_kw) -> None:
    pass


@dataclass
class Route:
    """What a transfer into the DB host needs, handed over by the step that runs it."""

    target: Any  # targets.base.Target: the DB host
    catalog: Any  # store.catalog.Catalog: the env's backups in their store
    access: Any  # database.access.DbAccess of the env
    stall_timeout: float  # backup.stall_timeout
    restore_jobs: int | None = None  # backup.restore_jobs (None: chosen by the host's cores)
    emit: Callable[..., None] = _quiet  # emit(kind, message, **data)
    progress: Callable[..., None] = _quiet  # progress(step, done, total, **data)
    locked: bool = False  # the run holds the env's lock: dead runs' spools may be removed

    @property
    def store(self):
        return self.catalog.store


# restore_plan: pg_restore single job below these, -j N above
ONE_JOB_MAX_CORES = 2  # on 2 cores, -j2 gains little (bench/README.md)
ONE_JOB_BELOW_BYTES = 64 << 20  # small dumps: worker start-up dominates


def restore_plan(r: Route, m) -> tuple[str, int]:
    """(mode, jobs) of restoring ``m`` on the route's host:

    - ``file``: the store's own uncompressed (gzip/none) file on this machine, verified in place;
    - ``pipe``: a zstd backup restored by one job, on a host with ``zstd``: the stored
      (compressed) bytes are verified (the store's own file in place, else spooled as they are,
      a sixth of the decompressed size), then ``zstd -dc file | pg_restore`` decompresses them
      on the way into pg_restore: no decompressed copy is written and read back (bench/README.md);
    - ``spool``: everything else (``-j N`` needs a seekable archive): spooled decompressed.
    """
    target, cfg = r.target, r.restore_jobs
    if target.host_path(r.store.local_path(m.dump_key)) and m.compression in ("gzip", "none"):
        return "file", cfg or max(1, min(8, target.cpu_count()))
    if cfg is not None:
        jobs = max(1, cfg)
    else:
        jobs = 1 if m.size < ONE_JOB_BELOW_BYTES else max(1, min(8, target.cpu_count()))
        jobs = 1 if jobs <= ONE_JOB_MAX_CORES else jobs
    if jobs == 1 and m.compression == "zstd" and has_command(target, "zstd"):
        return "pipe", 1
    return "spool", jobs


def _decoder(target, m, host_decoder: list[str]) -> tuple[list[str] | None, object | None]:
    """How a zstd backup is decompressed: on the host when it has zstd (its own core, returns
    the argv to put in front), else here (returns a zstandard decompressobj). Others: neither."""
    if m.compression != "zstd":
        return None, None
    if has_command(target, "zstd"):
        return host_decoder, None
    return None, zstd_decoder()


def _pump(r: Route, m, src, proc, dec) -> tuple[str, int, list[BaseException]]:
    """Copy the stored bytes of ``m`` into ``proc.stdin`` (through ``dec`` when given), one
    chunk at a time, hashing every stored byte. A write or decoder failure stops the writing
    but not the hashing, so a corrupt backup is reported as corrupt whatever broke first.
    Returns (sha256 hex of the stored bytes, their count, failures)."""
    sha = hashlib.sha256()
    moved = 0
    tick = Every(r.progress)
    broken: list[BaseException] = []
    # no byte read or written for backup.stall_timeout: the process is killed, the run told so
    watch = StallWatch(proc, r.stall_timeout, f"the restore stream of backup {m.id} into {r.target.name}")
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


def _spool_glob(r: Route) -> str:
    return f"{SPOOL_PREFIX.rsplit('/', 1)[1]}{r.access.db.name}.*"


def remove_spool(target, folder: str | None) -> None:
    """Remove a spool folder on the DB host (best effort: never hides the run's own outcome)."""
    if folder and folder.startswith(SPOOL_PREFIX):
        try:
            target.run(["rm", "-rf", "--", folder], check=False)
        except Exception:  # noqa: BLE001 - a lost link: the next run removes it
            pass


def _remove_dead_spools(r: Route) -> None:
    """Spool folders of this database left by runs that died. Only under the env's lock: then
    no other run of this database can be using one."""
    if not r.locked:
        return
    target = r.target
    # and, in the same `find` (one process on the DB host per restore, not two): older versions
    # spooled into a world-readable /tmp/vetai-ops-XXXXXXXXXX.dump (no database in its name):
    # one untouched for a day is a dead run's, whichever database it held
    target.run(["find", "/tmp", "-maxdepth", "1",
                "(", "-type", "d", "-name", _spool_glob(r), "-exec", "rm", "-rf", "--", "{}", "+", ")", "-o",
                "(", "-type", "f", "-name", "vetai-ops-??????????.dump", "-mmin", "+1440", "-delete", ")"],
               check=False)


def _spool_folder(r: Route) -> str:
    """A fresh private (0700) folder in the DB host's /tmp for one spool file."""
    target = r.target
    res = target.run(["mktemp", "-d", f"{SPOOL_PREFIX}{r.access.db.name}.XXXXXXXXXX"])
    folder = res.text.strip()
    if not folder.startswith(SPOOL_PREFIX) or "\n" in folder:
        raise OpsError(f"mktemp -d on {target.name} returned an unexpected path {folder[:120]!r}")
    return folder


def materialise(r: Route, m, decompress: bool = True) -> tuple[str, str | None]:
    """A verified custom-format archive on the DB host (``decompress=False``: the stored
    bytes as they are, for the ``pipe`` mode). Returns (path, spool folder to remove
    afterwards, or None when ``path`` is the store's own file)."""
    target, store = r.target, r.store
    _remove_dead_spools(r)  # whichever mode this restore takes: a dead run's spool is not left behind
    on_host = target.host_path(store.local_path(m.dump_key))
    if on_host and (m.compression in ("gzip", "none") or not decompress):  # the stored file, verified in place
        sha, n = hashlib.sha256(), 0
        with store.open_read(m.dump_key) as f:
            for b in iter(lambda: f.read(CHUNK), b""):
                sha.update(b)
                n += len(b)
        _check(m, sha.hexdigest(), store, n)
        return on_host, None
    free = target.free_bytes("/tmp")
    if free < m.size * (4 if m.compression == "zstd" and decompress else 1.1):
        raise OpsError(
            f"not enough room on {target.name} to spool the backup: {free // 2**20} MiB free in /tmp",
            "free space on the DB host",
        )
    folder = _spool_folder(r)
    path = f"{folder}/backup.dump"
    host_dec, dec = _decoder(target, m, ["zstd", "-d", "-q", "-c"]) if decompress else (None, None)
    # the shell creates the file (noclobber: never an existing one) 0600 under umask 077, in a
    # 0700 folder; `zstd -o` would replace it with a file of its own mode
    writer = ["sh", "-c", 'umask 077 && set -C && exec "$@" > "$0"', path, *(host_dec or ["cat"])]
    try:
        with r.catalog.open_dump(m) as src:  # what the manifest pinned
            proc = target.start(writer, stdin=True)
            digest, moved, broken = _pump(r, m, src, proc, dec)
            rc = proc.wait()
            if rc != 0 and not broken:
                broken.append(CommandFailed(f"writing the restore spool on {target.name} failed: {proc.stderr_text()[-400:]}"))
        _check(m, digest, store, moved)  # a corrupt backup is reported as such, whatever broke first
        if broken:
            raise OpsError(f"could not prepare backup {m.id} on {target.name}: {broken[0]}; the live database was not touched")
    except BaseException:
        remove_spool(target, folder)
        raise
    return path, folder


def _check(m, got: str, store, size: int | None = None) -> None:
    if size is not None and size != m.size:
        raise ChecksumMismatch(
            f"backup {m.id} is corrupt: {store.url(m.dump_key)} has {size} bytes, manifest says {m.size};"
            " the live database was not touched",
            "restore another backup (`invoke backups.list`)",
        )
    if got != m.sha256:
        raise ChecksumMismatch(
            f"backup {m.id} is corrupt: sha256 of {store.url(m.dump_key)} is {got[:16]}..., manifest says "
            f"{m.sha256[:16]}...; the live database was not touched",
            "restore another backup (`invoke backups.list`)",
        )


def database_props(access, m) -> dict | None:
    """The database-level properties a copy of ``m`` gets (database/dbprops.py): the manifest's,
    or for a manifest older than them, the live database's own as the app sees it now."""
    if getattr(m, "database_props", None):
        return m.database_props
    try:
        with access.admin() as c:
            return dbprops.capture(c, access.db.name)
    except Exception:  # noqa: BLE001 - no live database to ask: a plain copy
        return None


def restore_into(r: Route, m, dbname: str, maint=None, props: dict | None = None) -> dict:
    """Materialise backup ``m`` (sha256 verified) and ``pg_restore -j N`` it into a NEW
    database ``dbname`` on the DB host, created with the recorded encoding and locale;
    objects keep their owners and grants (no --no-owner / --no-acl: the preflight proved the
    role can). Never touches any other database. On any failure ``dbname`` is dropped; the
    spool file (if any) is always removed. Returns timings."""
    access, target = r.access, r.target
    maint = maint or access.admin
    props = props if props is not None else database_props(access, m)
    t0 = time.monotonic()
    mode, jobs = restore_plan(r, m)
    path, spool = materialise(r, m, decompress=mode != "pipe")
    t_verified = time.monotonic()
    try:
        with new_database(maint, dbname, props):
            argv = [access.bin("pg_restore"), "--exit-on-error", "--no-password", f"--jobs={jobs}",
                    *access.pg_args(dbname)]
            if mode == "pipe":  # verified compressed bytes, decompressed on their way into pg_restore
                argv = pipeline(["zstd", "-d", "-q", "-c", "--", path], argv)
                r.emit("info", f"zstd -d | pg_restore into {dbname} on {target.name}")
            else:
                argv.append(path)
                r.emit("info", f"pg_restore -j {jobs} into {dbname} on {target.name}")
            with access.pg_env() as penv:
                rc, err = _watched_restore(r, argv, penv, RestoreProgress(maint, dbname), dbname)
            if rc != 0:
                raise CommandFailed(f"pg_restore into {dbname} failed on {target.name} (exit {rc}): {err.strip()[-600:]}",
                                    returncode=rc)
    finally:
        remove_spool(target, spool)
    return {"verify_s": round(t_verified - t0, 3), "restore_s": round(time.monotonic() - t_verified, 3), "mode": mode}


def _watched_restore(r: Route, argv, env, progress, dbname) -> tuple[int, str]:
    """Run pg_restore under a stall watch: one that makes no progress on the server for
    backup.stall_timeout (stopped, hung, waiting on a lock) is killed and reported
    (:class:`StreamStalled`); its copy is then dropped by the caller. (exit code, stderr)"""
    proc = r.target.start(argv, env=env)
    with StallWatch(proc, r.stall_timeout, f"pg_restore into {dbname} on {r.target.name}",
                    moving=progress.moved, still="made no progress") as watch:
        try:
            rc = proc.wait()
        except BaseException:  # Ctrl-C: nothing is left running on the host
            proc.kill()
            proc.wait()
            raise
    watch.check("the live database was not touched")
    return rc, proc.stderr_text()


def inspect_copy(access, dbname: str) -> tuple[str | None, set[str]]:
    """(Alembic revision, public tables) of database ``dbname``."""
    with access.connect(dbname) as c:
        rev = mig.current(c)
        tables = set(public_tables(c))
    return rev, tables
