"""Backup: ``pg_dump -Fc`` on the DB host, streamed host -> (SSH) -> operator -> sha256 ->
store, then the manifest, written last. No temp file anywhere; memory stays bounded.

Compression (env.backup.compression):
- ``zstd`` (default): ``pg_dump -Fc -Z0 | zstd -T0`` on the DB host when it has zstd
  (saves network bytes), else zstd in the operator process (``zstandard``, threads:
  :class:`vetai_ops.transfer.stream.ZstdReader`).
- ``gzip``: pg_dump's own compression (``-Fc`` default level).
- ``none``: ``-Fc -Z0``.
The manifest records which, so restore knows how to read it; the sha256 is over the
stored bytes (hashed on their way by the catalog: :meth:`vetai_ops.store.catalog.Catalog.write_dump`).
"""

from __future__ import annotations

import time

from .. import __version__, policy
from ..database.archive import pg_dump_version as archive_pg_dump_version
from ..paths import git_head
from ..store.manifest import Manifest
from ..targets import has_command, pipeline
from . import step
from ..database import dbprops, writestats
from ..database.introspect import estimated_rows
from ..database.rights import object_owners
from ..transfer.stream import DumpStream, Every
from ..units import human_bytes


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

    with backup_in_progress(ctx.access.admin, ctx.access.db.name,
                            f"vetai-ops backup ({ctx.action}) by {ctx.operator}"):
        return _take_backup(ctx, reason)


def _take_backup(ctx, reason: str) -> Manifest:
    access, target, catalog = ctx.access, ctx.db_target, ctx.catalog
    signing_key(ctx)
    t0 = time.monotonic()
    argv, compression, on_operator = dump_command(ctx)
    with access.pg_env() as penv, access.connect() as conn:
        write_stats = writestats.snapshot(conn)  # before pg_dump starts: writes after it are "since the backup"
        stream = DumpStream(target, argv, env=penv, stall_timeout=ctx.env.backup.stall_timeout,
                            zstd_level=ctx.env.backup.zstd_level if on_operator else None)
        try:
            # read while pg_dump starts (it connects and reads the catalogs before its first byte)
            from ..database.migrations import current

            revision = current(conn)
            server_version = conn.execute("show server_version").fetchone()[0]
            tables = estimated_rows(conn)
            # what pg_dump does not carry: the database's own grants, settings, locale, comment (preflight
            # captured them before anything of the run, e.g. a write fence, touched them)
            props = ctx.state.db_props or dbprops.capture(conn, access.db.name)
            owners = ctx.state.object_owners or object_owners(conn)
            db_size = conn.execute("select pg_database_size(current_database())").fetchone()[0]
            conn.close()
            bid = catalog.allocate_id()  # the run's one listing: the new id's clash check and the size estimate
            # an estimate for the progress bar's ETA: the size of this env's last backup
            previous = catalog.newest(lambda m: m.compression == compression)
        except BaseException:
            stream.abort()
            raise
        estimate = previous.size if previous else None
        moved = [0]
        tick = Every(ctx.progress)

        def progress(n: int) -> None:
            moved[0] += n
            tick("backup", moved[0], max(estimate, moved[0]) if estimate else None, id=bid)

        ctx.emit("info", f"dumping {access.db.name} on {target.name} -> {ctx.store.url(catalog.dump_key(bid))}", id=bid)
        # what the store may need to size its parts by (S3 allows 10,000 parts): the last
        # backup's size, else the database's on-disk size, doubled for growth and bytea's hex
        dump = catalog.write_dump(bid, stream, size_hint=2 * max(estimate or 0, db_size or 0) or None,
                                  progress=progress)
    tick.final()
    # pg_dump's version as the archive's own header states it (no `pg_dump --version` round
    # trip); asked of the DB host only when the header cannot be read
    pg_dump_version = (archive_pg_dump_version(dump.head, compression) or ctx.state.pg_dump_version
                       or target.run([access.bin("pg_dump"), "--version"]).text.strip())
    m = Manifest(
        id=bid,
        env=ctx.env.name,
        database=access.db.name,
        size=dump.size,
        sha256=dump.sha256,
        revision=revision,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        server_version=server_version,
        pg_dump_version=pg_dump_version,
        tool_version=__version__,
        git_commit=git_commit(),
        duration_s=round(time.monotonic() - t0, 3),
        reason=reason,
        dump_key=dump.key,
        compression=compression,
        host=target.name,
        tables=tables,
        database_props=props,
        object_owners=owners,
        log_key=catalog.log_key(bid),
        db_size=db_size,
        write_stats=write_stats,
        etag=dump.etag,
        version_id=dump.version_id,
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
    ctx.state.backup, ctx.state.backup_url = m, ctx.store.url(m.dump_key)
    ctx.emit("backup", "", id=m.id, size=m.size, sha256=m.sha256, url=ctx.store.url(m.dump_key), revision=m.revision)
    return f"{m.id} {human_bytes(m.size)} sha256 {m.sha256[:12]} ({m.compression})"
