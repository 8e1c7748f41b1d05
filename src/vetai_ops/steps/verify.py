"""Prove a backup restores: restore it into a scratch database, check it, drop it, and
record the result in the manifest's ``verifications``. Used by ``invoke backups.verify``
and, in a deploy, before any acknowledged destructive revision runs (the ``verify`` step).

The live database is never connected to: only the maintenance DB and the scratch DB.
"""

from __future__ import annotations

import time

from ..errors import GateRefused, OpsError, VerifyFailed, short_error
from ..secrets import redact
from ..database.introspect import drop_database, row_counts
from ..database.swap import verify_name
from . import route, step


def _row_counts(access, dbname: str) -> dict[str, int]:
    with access.connect(dbname) as c:
        return row_counts(c)


def verify_manifest(ctx, m, *, sign: bool = False) -> dict:
    """Restore ``m`` into a scratch DB, check it, drop it; record the result in its manifest
    (``sign``: sign an unsigned one when the drill passed). Returns the verification record."""
    from ..transfer.restore import inspect_copy, restore_into

    access = ctx.access
    scratch = verify_name(access.db.name, m.id)
    t0 = time.monotonic()
    rec: dict = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ok": False, "revision": None,
                 "tables": [], "rows": {}, "duration_s": 0.0, "error": None,
                 "operator": ctx.operator, "scratch_db": scratch}
    problems: list[str] = []
    try:
        ctx.emit("info", f"restoring {m.id} into scratch database {scratch} on {ctx.db_target.name}")
        timings = restore_into(route(ctx), m, scratch)
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
            drop_database(access.admin, scratch)
        except Exception as e:  # noqa: BLE001
            ctx.emit("warning", f"could not drop scratch database {scratch}: {redact(short_error(e))}")
    rec["duration_s"] = round(time.monotonic() - t0, 3)
    rec["ok"] = not problems
    rec["error"] = "; ".join(problems) or None
    record(ctx, m, rec, sign=sign)
    return rec


def record(ctx, m, rec: dict, *, sign: bool = False) -> None:
    """Append ``rec`` to the manifest of ``m`` and sign it again: the signature covers the
    verifications, so an ``ok: true`` nobody signed is never trusted.

    Only what this run trusted is signed: the backup as drilled (``m``: signed, or adopted by
    ``--sign`` after a successful drill), plus the records of a fresh read (another
    verification may have been recorded meanwhile) when that is still signed and describes
    the same backup. An unsigned or mis-signed manifest is left as it is (the record is in
    the run's result and journal): appending to it and signing would launder it."""
    from ..store.manifest import Manifest

    cat = ctx.catalog
    try:
        key = cat.key()
    except OpsError:
        key = None
    adopt = sign and rec["ok"] and not m.signed
    if not (m.signed or adopt or key is None):
        ctx.emit("warning", f"backup {m.id} is not signed ({m.trust}): this result is not recorded in its manifest;"
                            " `backups.verify --sign` signs it after a successful drill")
        return
    try:
        fresh = cat.read_manifest(m.id)
    except OpsError:
        fresh = None
    if key is None:  # the env signs nothing: nothing to launder, keep what is there
        out = Manifest.from_json((fresh or m).to_json())
    elif fresh is not None and fresh.signed and fresh.core() == m.core():
        out = Manifest.from_json(fresh.to_json())
    else:
        out = Manifest.from_json(m.to_json())
        if not m.signed:  # records nobody signed are nobody's word: not signed into it
            out.verifications, out.restores = [], []
    out.verifications = list(out.verifications or []) + [rec]
    cat.write_manifest(out)
    if adopt:
        ctx.emit("info", f"backup {m.id} restored, checked and now signed with env {cat.env}'s manifest key")


@step("verify")
def verify(ctx, always: bool = False):
    """Restore-test this run's backup before acknowledged destructive revisions run."""
    if not (always or ctx.state.acknowledged_destructive):
        return "not needed (no acknowledged destructive revision pending)"
    m = ctx.state.backup
    if m is None:
        raise GateRefused("a verified backup is required before acknowledged destructive revisions, and none was taken")
    rec = verify_manifest(ctx, m)
    if not rec["ok"]:
        raise VerifyFailed(f"backup {m.id} failed verification ({rec['error']}); destructive revisions not applied",
                           f"check the store and take a new backup; `invoke backups.verify --to={m.id}` shows details")
    return f"{m.id} restored into a scratch DB and checked ({sum(rec['rows'].values())} rows)"
