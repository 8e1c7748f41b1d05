"""Backup: ``pg_dump -Fc`` on the DB host, streamed host -> (SSH) -> operator -> sha256 ->
store, then the manifest, written last. No temp file anywhere; memory stays bounded.

Compression (env.backup.compression):
- ``zstd`` (default): ``pg_dump -Fc -Z0 | zstd -T0`` on the DB host when it has zstd
  (saves network bytes), else zstd in the operator process (``zstandard``, threads).
- ``gzip``: pg_dump's own compression (``-Fc`` default level).
- ``none``: ``-Fc -Z0``.
The manifest records which, so restore knows how to read it; the sha256 is over the
stored bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

from sqlalchemy import text

from .. import __version__, policy
from ..errors import CommandFailed, OpsError, StoreError
from ..database.archive import pg_dump_version as archive_pg_dump_version
from ..paths import git_head
from ..store.catalog import Manifest
from ..targets import has_command, pipeline
from ..targets.stall import StallWatch, WatchedReader
from . import step
from ..database import dbprops, writestats
from ..database.introspect import estimated_rows
from ..database.rights import object_owners
from ..transfer import Every
from ..units import human_bytes

CHUNK = 1 << 20
HEAD_BYTES = 64 << 10  # the first stored bytes kept: the archive header says pg_dump's version


class HashingReader:
    """Wraps a binary stream: read(n) passes bytes through, hashing and counting them."""

    def __init__(self, raw, progress=None):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.progress = progress
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        b = self.raw.read(CHUNK if n is None or n < 0 else n)
        if b:
            self.sha.update(b)
            if self.size < HEAD_BYTES:
                self.head += b[:HEAD_BYTES - self.size]
            self.size += len(b)
            if self.progress:
                self.progress(len(b))
        return b

    def readable(self) -> bool:
        return True


def git_commit() -> str | None:
    """The project's checked-out commit (12 hex digits), read from .git without a subprocess."""
    return git_head()


def dump_command(ctx) -> tuple[list[str], str, bool]:
    """(argv on the DB host, compression recorded in the manifest, compress on operator?)."""
    access, cfg = ctx.access, ctx.env.backup
    base = [access.bin("pg_dump"), "-Fc", "--no-password", *access.pg_args()]
    if cfg.compression == "gzip":
        return base, "gzip", False
    dump = base + ["-Z0"]
    if cfg.compression == "none":
        return dump, "none", False
    if cfg.compress_on == "host" and has_command(ctx.db_target, "zstd"):
        return pipeline(dump, ["zstd", "-q", "-c", "-T0", f"-{cfg.zstd_level}"]), "zstd", False
    return dump, "zstd", True


class _ZstdReader:
    """Compress a stream on the operator side, multi-threaded, bounded memory."""

    def __init__(self, raw, level: int):
        import zstandard

        self._r = zstandard.ZstdCompressor(level=level, threads=-1).stream_reader(raw, read_size=CHUNK)

    def read(self, n: int = -1) -> bytes:
        return self._r.read(CHUNK if n is None or n < 0 else n)


def signing_key(ctx):
    """This env's manifest key, checked before anything is dumped. A protected env without
    one is refused (its backups could not be restored by --to); elsewhere a warning."""
    key = ctx.catalog.key()  # ConfigError when the configured variable is not exported
    if key is None:
        policy.refuse_unsigned_backups(ctx.env)
        ctx.emit("warning", f"backups of env {ctx.env.name} are written unsigned (no storage.manifest_key_env):"
                            " restoring one needs --trust-unsigned")
    elif key.created:
        ctx.emit("info", f"generated env {ctx.env.name}'s manifest key in {key.source} (0600): keep it; backups"
                         " signed with it are not trusted without it")
    return key


def take_backup(ctx, reason: str = "manual") -> Manifest:
    """One backup, holding the shared "backup in progress" lock until its manifest is written
    (``backups.prune`` leaves its dump and upload alone meanwhile)."""
    from ..database.locks import backup_in_progress

    with backup_in_progress(ctx.access.admin_engine(), ctx.access.db.name,
                            f"vetai-ops backup ({ctx.action}) by {ctx.operator}"):
        return _take_backup(ctx, reason)


def _take_backup(ctx, reason: str) -> Manifest:
    access, target, catalog = ctx.access, ctx.db_target, ctx.catalog
    signing_key(ctx)
    t0 = time.monotonic()
    argv, compression, on_operator = dump_command(ctx)
    with access.pg_env() as penv, access.engine().connect() as conn:
        write_stats = writestats.snapshot(conn)  # before pg_dump starts: writes after it are "since the backup"
        proc = target.start(argv, env=penv)
        watch = StallWatch(proc, ctx.env.backup.stall_timeout, f"the dump stream from pg_dump on {target.name}")
        raw = WatchedReader(proc.stdout, watch, "no backup was registered")
        try:
            # read while pg_dump starts (it connects and reads the catalogs before its first byte)
            from ..database.migrations import current

            revision = current(conn)
            server_version = conn.execute(text("show server_version")).scalar_one()
            tables = estimated_rows(conn)
            # what pg_dump does not carry: the database's own grants, settings, locale, comment (preflight
            # captured them before anything of the run, e.g. a write fence, touched them)
            props = ctx.state.get("db_props") or dbprops.capture(conn, access.db.name)
            owners = ctx.state.get("object_owners") or object_owners(conn)
            db_size = conn.execute(text("select pg_database_size(current_database())")).scalar_one()
            conn.close()
            keys = catalog.keys()  # the run's one listing: the new id's clash check and the size estimate
            bid = catalog.allocate_id(keys)
            key = catalog.dump_key(bid)
            # an estimate for the progress bar's ETA: the size of this env's last backup
            previous = catalog.newest(lambda m: m.compression == compression, keys)
        except BaseException:
            watch.close()
            proc.kill()
            proc.wait()
            raise
        estimate = previous.size if previous else None
        moved = [0]
        tick = Every(ctx.progress)

        def progress(n: int) -> None:
            moved[0] += n
            tick("backup", moved[0], max(estimate, moved[0]) if estimate else None, id=bid)

        ctx.emit("info", f"dumping {access.db.name} on {target.name} -> {ctx.store.url(key)}", id=bid)
        src = _ZstdReader(raw, ctx.env.backup.zstd_level) if on_operator else raw
        reader = HashingReader(src, progress)
        try:
            # what the store may need to size its parts by (S3 allows 10,000 parts): the last
            # backup's size, else the database's on-disk size, doubled for growth and bytea's hex
            ctx.store.put_stream(key, reader, size_hint=2 * max(estimate or 0, db_size or 0) or None)
        except BaseException:
            proc.kill()
            proc.wait()
            # the upload's own error says what is left behind; a delete that fails too (S3
            # unreachable) must not replace it with "S3 delete failed"
            with contextlib.suppress(OpsError):
                ctx.store.delete(key)
            raise
        finally:
            watch.close()
        rc = proc.wait()
    tick.final()
    if rc != 0:
        ctx.store.delete(key)
        raise CommandFailed(
            f"pg_dump failed on {target.name} (exit {rc}): {proc.stderr_text().strip()[-600:]}; no backup was registered",
            "check the DB connection settings and that pg_dump matches the server version",
            returncode=rc,
        )
    if reader.size == 0:
        ctx.store.delete(key)
        raise StoreError("pg_dump produced no bytes; no backup was registered")
    # pg_dump's version as the archive's own header states it (no `pg_dump --version` round
    # trip); asked of the DB host only when the header cannot be read
    pg_dump_version = (archive_pg_dump_version(reader.head, compression) or ctx.state.get("pg_dump_version")
                       or target.run([access.bin("pg_dump"), "--version"]).text.strip())
    pinned = ctx.store.stat(key)  # size, and on S3 the ETag / VersionId the manifest pins
    stored = pinned["size"]
    if stored != reader.size:
        ctx.store.delete(key)
        raise StoreError(f"stored size {stored} != streamed size {reader.size} for {key}; no backup was registered")
    m = Manifest(
        id=bid,
        env=ctx.env.name,
        database=access.db.name,
        size=reader.size,
        sha256=reader.sha.hexdigest(),
        revision=revision,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        server_version=server_version,
        pg_dump_version=pg_dump_version,
        tool_version=__version__,
        git_commit=git_commit(),
        duration_s=round(time.monotonic() - t0, 3),
        reason=reason,
        dump_key=key,
        compression=compression,
        host=target.name,
        tables=tables,
        database_props=props,
        object_owners=owners,
        log_key=catalog.log_key(bid),
        db_size=db_size,
        write_stats=write_stats,
        etag=pinned["etag"],
        version_id=pinned["version_id"],
    )
    catalog.write_manifest(m)  # last, signed: only now does the backup exist
    return m


@step("backup")
def backup(ctx, reason: str = "manual"):
    if ctx.options.get("skip_backup"):
        policy.refuse_skip_backup(ctx.env)
        ctx.emit("warning", "backup skipped (--skip-backup)")
        return "skipped"
    m = take_backup(ctx, reason=reason)
    ctx.state.update(backup_id=m.id, backup_url=ctx.store.url(m.dump_key), backup_manifest=m)
    ctx.emit("backup", "", id=m.id, size=m.size, sha256=m.sha256, url=ctx.store.url(m.dump_key), revision=m.revision)
    return f"{m.id} {human_bytes(m.size)} sha256 {m.sha256[:12]} ({m.compression})"
