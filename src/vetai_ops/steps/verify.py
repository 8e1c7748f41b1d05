"""Prove a backup restores: restore it into a scratch database, check it, drop it, and
record the result in the manifest's ``verifications``. Used by ``invoke backups.verify``
and, in a deploy, before any acknowledged destructive revision runs (the ``verify`` step).

The live database is never connected to: only the maintenance DB and the scratch DB.
"""

from __future__ import annotations

import time

from ..errors import GateRefused, VerifyFailed, short_error
from ..secrets import redact
from ..database import introspect
from ..database.introspect import row_counts
from . import step


def drop_database(ctx, name: str) -> None:
    introspect.drop_database(ctx.access.admin_engine(), name)


def scratch_name(db: str, bid: str) -> str:
    return f"{db}_verify_{bid}".lower()


def _row_counts(access, dbname: str) -> dict[str, int]:
    eng = access.engine(dbname)
    try:
        with eng.connect() as c:
            return row_counts(c)
    finally:
        eng.dispose()


def verify_manifest(ctx, m) -> dict:
    """Restore ``m`` into a scratch DB, check it, drop it; returns the verification record."""
    from .restore import inspect_copy, restore_into

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


@step("verify")
def verify(ctx, always: bool = False):
    """Restore-test this run's backup before acknowledged destructive revisions run."""
    if not (always or ctx.state.get("acknowledged_destructive")):
        return "not needed (no acknowledged destructive revision pending)"
    m = ctx.state.get("backup_manifest")
    if m is None:
        raise GateRefused("a verified backup is required before acknowledged destructive revisions, and none was taken")
    rec = verify_manifest(ctx, m)
    if not rec["ok"]:
        raise VerifyFailed(f"backup {m.id} failed verification ({rec['error']}); destructive revisions not applied",
                           f"check the store and take a new backup; `invoke backups.verify --to={m.id}` shows details")
    return f"{m.id} restored into a scratch DB and checked ({sum(rec['rows'].values())} rows)"
