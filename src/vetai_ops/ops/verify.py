"""``invoke backups.verify``: prove a backup restores, without touching the live DB.

1. resolve the backup (id, prefix, latest, a time, -2h, pre-deploy: :mod:`vetai_ops.store.when`); materialise it on the DB host while
   checking its sha256 (a corrupt byte stops here);
2. ``pg_restore`` into a scratch database ``<db>_verify_<id>`` (same code as rollback:
   :func:`vetai_ops.steps.restore.restore_into`);
3. check the copy: Alembic revision == manifest, every table of the manifest present,
   exact row count of every table (proves each table's data is readable);
4. drop the scratch database (always);
5. append the result to the manifest's ``verifications`` (the manifest is re-read just
   before, then rewritten atomically by the store).

It holds the env's deploy lock throughout (exit 3 while a deploy, rollback, prune or
another verify runs): two verifications never overwrite each other's manifest update,
and the restore spool of a run that died can be told from one in use.

The live database is never connected to: only the maintenance DB and the scratch DB.
"""

from __future__ import annotations

from ..errors import VerifyFailed
from ..journal import read_history
from ..steps.verify import verify_manifest
from . import op_context

__all__ = ["VerifyFailed", "verify_backup"]


def verify_backup(env_name: str | None, to: str | None, sink=None) -> dict:
    """Verify backup ``to`` of env ``env_name``. Raises VerifyFailed (after recording) if it failed."""
    with op_context(env_name, "verify", sink=sink) as ctx:
        from ..steps.lock import lock

        lock(ctx)  # one run at a time per env: the manifest update below is never lost
        sel = ctx.catalog.select(to or "latest", history=lambda: read_history(ctx.access.engine(), limit=500))
        m = sel.manifest
        ctx.emit("run_started", f"verify backup {m.id} of {ctx.env.name}", step=None, run_id=ctx.run_id)
        rec = verify_manifest(ctx, m)
        result = {"ok": rec["ok"], "id": m.id, "env": ctx.env.name, "url": ctx.store.url(m.dump_key),
                  "manifest_revision": m.revision, "verification": rec, "selection": sel.to_json()}
        outcome = "success" if rec["ok"] else "failed"
        ctx.emit("run_finished", f"verify {outcome}", step=None, outcome=outcome, duration_s=rec["duration_s"])
        if not rec["ok"]:
            raise VerifyFailed(
                f"backup {m.id} failed verification: {rec['error']}; recorded in its manifest (the live database was not touched)",
                "do not rely on this backup: take a new one (`invoke backup`) and verify it",
                report=result,
            )
        return result
