"""``invoke backups.verify``: prove a backup restores, without touching the live DB.

1. resolve the backup (id, prefix, latest, a time, -2h, pre-deploy: :mod:`vetai_ops.store.when`); materialise it on the DB host while
   checking its sha256 (a corrupt byte stops here);
2. ``pg_restore`` into a scratch database ``<db>_verify_<id>`` (same code as rollback:
   :func:`vetai_ops.steps.restore.restore_into`);
3. check the copy: Alembic revision == manifest, every table of the manifest present,
   exact row count of every table (proves each table's data is readable);
4. drop the scratch database (always);
5. append the result to the manifest's ``verifications`` and sign it again (the manifest is
   re-read just before, then rewritten atomically by the store; see steps/verify.record).
   ``--sign``: an unsigned backup is signed here, and only here, after a drill that passed.

It holds the env's deploy lock throughout (exit 3 while a deploy, rollback, prune or
another verify runs): two verifications never overwrite each other's manifest update,
and the restore spool of a run that died can be told from one in use.

The live database is never connected to: only the maintenance DB and the scratch DB.
"""

from __future__ import annotations

from ..errors import ConfigError, VerifyFailed
from ..database.history import read as read_history
from ..steps.verify import verify_manifest
from ..pipeline import run_context

__all__ = ["VerifyFailed", "verify_backup"]


def verify_backup(env_name: str | None, to: str | None, sink=None, *, trust_unsigned: bool = False,
                  sign: bool = False) -> dict:
    """Verify backup ``to`` of env ``env_name``. Raises VerifyFailed (after recording) if it failed.

    Unsigned or mis-signed backups are refused unless ``trust_unsigned`` (never on a protected
    env) or ``sign``: the drill runs, and only when it passed is the manifest signed, pinning
    the object it read (size, sha256, and on S3 its ETag / VersionId)."""
    with run_context(env_name, "verify", sink=sink) as ctx:
        from ..steps.lock import lock

        lock(ctx)  # one run at a time per env: the manifest update below is never lost
        sel = ctx.catalog.select(to or "latest", history=lambda: read_history(ctx.access.connect, limit=500),
                                 trust_unsigned=trust_unsigned, enforce=not sign)
        m = sel.manifest
        ctx.emit("run_started", f"verify backup {m.id} of {ctx.env.name}", step=None, run_id=ctx.run_id)
        if sign and not m.signed:
            if ctx.catalog.key() is None:
                raise ConfigError(f"env {ctx.env.name!r} has no manifest key to sign with",
                                  "set storage.manifest_key_env to the NAME of an environment variable holding it")
            ctx.emit("warning", f"backup {m.id} is not signed ({m.trust}); it is signed only if the restore drill passes:"
                                " sign only backups you know are this env's own")
            if not m.etag and not m.version_id:  # written before objects were pinned: pin the one drilled
                st = ctx.store.stat(m.dump_key)
                m.etag, m.version_id = st["etag"], st["version_id"]
        elif not m.signed:
            ctx.emit("warning", f"verifying backup {m.id}, which is not signed ({m.trust}), on --trust-unsigned")
        rec = verify_manifest(ctx, m, sign=sign)
        result = {"ok": rec["ok"], "id": m.id, "env": ctx.env.name, "url": ctx.store.url(m.dump_key),
                  "manifest_revision": m.revision, "signed": m.signed or (sign and rec["ok"]), "verification": rec,
                  "selection": sel.to_json()}
        outcome = "success" if rec["ok"] else "failed"
        ctx.emit("run_finished", f"verify {outcome}", step=None, outcome=outcome, duration_s=rec["duration_s"])
        if not rec["ok"]:
            raise VerifyFailed(
                f"backup {m.id} failed verification: {rec['error']}; recorded in its manifest (the live database was not touched)",
                "do not rely on this backup: take a new one (`invoke backup`) and verify it",
                report=result,
            )
        return result
