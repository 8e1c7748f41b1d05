"""``invoke backups.verify``: prove a backup restores, without touching the live DB.

1. resolve the backup (id, unique prefix or latest); materialise it on the DB host while
   checking its sha256 (a corrupt byte stops here);
2. ``pg_restore`` into a scratch database ``<db>_verify_<id>`` (same code as rollback:
   :func:`vetai_ops.steps.restore.restore_into`);
3. check the copy: Alembic revision == manifest, every table of the manifest present,
   exact row count of every table (proves each table's data is readable);
4. drop the scratch database (always);
5. append the result to the manifest's ``verifications`` (the manifest is re-read just
   before, then rewritten atomically by the store).

The live database is never connected to: only the maintenance DB and the scratch DB.
"""

from __future__ import annotations

import time

from sqlalchemy import text

from ..errors import OpsError, short_error
from ..secrets import redact
from . import drop_database, op_context


class VerifyFailed(OpsError):
    """The backup did not restore or its copy failed a check; recorded in the manifest."""

    exit_code = 4


def scratch_name(db: str, bid: str) -> str:
    return f"{db}_verify_{bid}".lower()


def _row_counts(access, dbname: str) -> dict[str, int]:
    eng = access.engine(dbname)
    try:
        with eng.connect() as c:
            tables = c.execute(text(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = 'public' and c.relkind = 'r' order by 1")).scalars().all()
            return {t: c.execute(text(f'select count(*) from public."{t.replace(chr(34), chr(34) * 2)}"')).scalar_one()
                    for t in tables}
    finally:
        eng.dispose()


def verify_manifest(ctx, m) -> dict:
    """Restore ``m`` into a scratch DB, check it, drop it; returns the verification record."""
    from ..steps.restore import inspect_copy, restore_into

    access = ctx.access
    scratch = scratch_name(access.db.name, m.id)
    t0 = time.monotonic()
    rec: dict = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ok": False, "revision": None,
                 "tables": [], "rows": {}, "duration_s": 0.0, "error": None,
                 "operator": ctx.operator, "scratch_db": scratch}
    problems: list[str] = []
    try:
        ctx.emit("info", f"restoring {m.id} into scratch database {scratch} on {ctx.db_target.name}")
        timings = restore_into(ctx, m, scratch)
        rec.update(timings)
        rev, tables = inspect_copy(access, scratch)
        rows = _row_counts(access, scratch)
        rec.update(revision=rev, tables=sorted(tables), rows=rows)
        if rev != m.revision:
            problems.append(f"restored copy is at revision {rev or 'base'}, manifest says {m.revision or 'base'}")
        missing = sorted(set(m.tables) - tables)
        if missing:
            problems.append(f"restored copy lacks tables {', '.join(missing)}")
        ctx.emit("info", f"{len(tables)} tables, {sum(rows.values())} rows, revision {rev or 'base'}")
    except Exception as e:  # noqa: BLE001 - a failed restore is a verification result
        problems.append(redact(short_error(e)))
    finally:
        try:
            drop_database(ctx, scratch)
        except Exception as e:  # noqa: BLE001
            ctx.emit("warning", f"could not drop scratch database {scratch}: {redact(short_error(e))}")
    rec["duration_s"] = round(time.monotonic() - t0, 3)
    rec["ok"] = not problems
    rec["error"] = "; ".join(problems) or None
    # re-read: another verification may have been recorded meanwhile
    fresh = ctx.catalog.read_manifest(m.id)
    fresh.verifications = list(fresh.verifications or []) + [rec]
    ctx.catalog.write_manifest(fresh)
    return rec


def verify_backup(env_name: str | None, to: str | None, sink=None) -> dict:
    """Verify backup ``to`` of env ``env_name``. Raises VerifyFailed (after recording) if it failed."""
    with op_context(env_name, "verify", sink=sink) as ctx:
        m = ctx.catalog.resolve(to or "latest")
        ctx.emit("run_started", f"verify backup {m.id} of {ctx.env.name}", step=None, run_id=ctx.run_id)
        rec = verify_manifest(ctx, m)
        result = {"ok": rec["ok"], "id": m.id, "env": ctx.env.name, "url": ctx.store.url(m.dump_key),
                  "manifest_revision": m.revision, "verification": rec}
        outcome = "success" if rec["ok"] else "failed"
        ctx.emit("run_finished", f"verify {outcome}", step=None, outcome=outcome, duration_s=rec["duration_s"])
        if not rec["ok"]:
            raise VerifyFailed(
                f"backup {m.id} failed verification: {rec['error']}; recorded in its manifest (the live database was not touched)",
                "do not rely on this backup: take a new one (`invoke backup`) and verify it",
                report=result,
            )
        return result
