"""``invoke backups.prune``: retention for backups and the databases restores leave behind.

Kept:
- the newest ``keep_last`` complete backups (signed ones first: an unsigned or forged
  manifest never displaces a signed backup), and every backup younger than ``keep_days``;
- ALWAYS the newest backup whose latest verification succeeded (``backups.verify``) in a
  signed manifest.
Removed (manifest first, so a half-pruned backup becomes an incomplete dump, never a
listed backup without its bytes): manifest, dump and run log of every other backup.

Also removed:
- incomplete dumps (no manifest) older than one hour (younger ones may be in progress);
- ``<db>_before_<id>`` databases (the previous live DB kept by a restore) by the same
  rule: keep the newest ``keep_last`` and those retired less than ``keep_days`` ago. A
  before-DB's age is the time the restore retired it (stamped on the database as a
  comment), else the id's own time.

Protected envs: dry-run unless ``yes``. ``dry_run`` always wins (:func:`vetai_ops.policy.prune_dry_run`).

Deleting takes the env's deploy lock (exit 3 while a deploy, rollback or verify runs) and
is refused while any backup of the env is being written (its shared "backup in progress"
lock, :mod:`vetai_ops.database.locks`): an upload older than the grace period may still be
a live backup's.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


from ..database import retired
from ..database.introspect import drop_database
from ..errors import ConfigError, LockHeld
from ..pipeline import run_context
from ..policy import prune_dry_run
from ..store.manifest import id_time
from ..units import human_age

INCOMPLETE_GRACE = timedelta(hours=1)


def _age(t: datetime, now: datetime) -> str:
    return human_age((now - t).total_seconds())


def plan_backups(backups: list, keep_last: int, keep_days: float, now: datetime) -> tuple[list[dict], list[dict]]:
    """(kept, removed) rows for complete backups, newest first."""
    cutoff = now - timedelta(days=keep_days)
    newest_verified = next((m.id for m in backups if m.verified), None)  # verified = signed and ok
    # the newest N counts signed backups first: manifests anyone with write access to the store
    # can add (forged, unsigned) never push a signed backup out of it
    newest = {m.id for m in ([m for m in backups if m.signed] + [m for m in backups if not m.signed])[:keep_last]}
    kept, removed = [], []
    for m in backups:
        t = id_time(m.id)
        reasons = []
        if m.id in newest:
            reasons.append(f"newest {keep_last}")
        if t >= cutoff:
            reasons.append(f"younger than {keep_days:g}d")
        if m.id == newest_verified:
            reasons.append("newest verified")
        row = {"kind": "backup", "name": m.id, "age": _age(t, now), "revision": m.revision, "size": m.size,
               "verified": m.verified, "signed": m.signed}
        if reasons:
            kept.append({**row, "reason": ", ".join(reasons)})
        else:
            removed.append({**row, "reason": f"older than {keep_days:g}d and not among the newest {keep_last}"})
    return kept, removed


def _before_dbs(ctx, now: datetime) -> list[tuple[str, str, datetime]]:
    """(database, id, retired at) of the databases restores retired, newest first. Retired at:
    the time the restore stamped on the database, else the id's own time (older versions did
    not stamp)."""
    out = [(name, bid, when or id_time(bid))
           for name, bid, when in retired.retired_databases(ctx.access.admin, ctx.access.db.name)]
    out.sort(key=lambda r: r[2], reverse=True)
    return out


def _exclusive(ctx) -> None:
    """The env's deploy lock, and no backup being written: else LockHeld (exit 3), nothing deleted."""
    from ..database.locks import running_backups
    from ..steps.lock import lock

    lock(ctx)  # held until the context closes
    busy = running_backups(ctx.access.admin, ctx.access.db.name)
    if busy:
        who = (busy[0].get("application_name") or "another vetai-ops run").removeprefix("vetai-ops ")
        since = busy[0].get("backend_start")
        raise LockHeld(
            f"a backup of env {ctx.env.name!r} is being written ({who}, since "
            f"{since.isoformat(timespec='seconds') if since else 'an unknown time'}); prune deleted nothing",
            "run backups.prune again when the backup has finished",
        )


def prune(env_name: str | None, keep_last: int, keep_days: float, *, yes: bool = False, dry_run: bool = False,
          sink=None, now: datetime | None = None) -> dict:
    try:
        keep_last, keep_days = int(keep_last), float(keep_days)
    except (TypeError, ValueError):
        raise ConfigError("--keep-last must be an integer and --keep-days a number") from None
    if keep_last < 1:
        raise ConfigError(f"--keep-last={keep_last}: at least one backup must be kept", "use --keep-last=1 or more")
    if keep_days < 0:
        raise ConfigError(f"--keep-days={keep_days:g} is negative", "use 0 or more days")
    now = now or datetime.now(timezone.utc)
    with run_context(env_name, "prune", sink=sink) as ctx:
        env = ctx.env
        dry_reason = prune_dry_run(env, dry_run=dry_run, yes=yes)
        effective_dry = dry_reason is not None
        if not effective_dry:
            _exclusive(ctx)
        cat, store = ctx.catalog, ctx.store
        kept, removed = plan_backups(cat.list(), keep_last, keep_days, now)
        # incomplete dumps: no manifest, older than the grace period
        for key in cat.incomplete():
            bid = key[len(cat.env) + 1:].split(".", 1)[0]
            t = id_time(bid)
            if now - t >= INCOMPLETE_GRACE:
                removed.append({"kind": "incomplete", "name": key, "age": _age(t, now), "reason": "dump without manifest"})
            else:
                kept.append({"kind": "incomplete", "name": key, "age": _age(t, now), "reason": "may be in progress (< 1h)"})
        cutoff = now - timedelta(days=keep_days)
        for i, (dbname, bid, t) in enumerate(_before_dbs(ctx, now)):
            row = {"kind": "database", "name": dbname, "age": _age(t, now)}
            if i < keep_last or t >= cutoff:
                kept.append({**row, "reason": f"newest {keep_last}" if i < keep_last else f"younger than {keep_days:g}d"})
            else:
                removed.append({**row, "reason": f"previous live DB older than {keep_days:g}d"})
        done = []
        if not effective_dry:
            for r in removed:
                if r["kind"] == "backup":
                    m = cat.read_manifest(r["name"])
                    store.delete(cat.manifest_key(m.id))  # first: from now on it is not a backup
                    store.delete(m.dump_key)
                    store.delete(m.log_key or cat.log_key(m.id))
                elif r["kind"] == "incomplete":
                    store.delete(r["name"])
                    bid = r["name"][len(cat.env) + 1:].split(".", 1)[0]
                    if not store.exists(cat.manifest_key(bid)):
                        store.delete(cat.log_key(bid))
                else:
                    drop_database(ctx.access.admin, r["name"])
                done.append(r["name"])
                ctx.emit("info", f"removed {r['kind']} {r['name']}")
            # parts of uploads that failed while the store was unreachable (S3 multipart debris)
            aborted = store.abort_incomplete_uploads(f"{cat.env}/", older_than_s=INCOMPLETE_GRACE.total_seconds())
            if aborted:
                done.append(f"{aborted} incomplete upload(s)")
                ctx.emit("info", f"aborted {aborted} incomplete upload(s) in {store.location}")
        return {
            "env": env.name,
            "protected": env.protected,
            "dry_run": effective_dry,
            "dry_run_reason": dry_reason,
            "keep_last": keep_last,
            "keep_days": keep_days,
            "store": store.location,
            "removed": removed,
            "kept": kept,
            "done": done,
        }
