"""``invoke backups.*``: list, verify, prune (``vetai_ops.ops.status``, ``.verify``, ``.prune``)."""

from __future__ import annotations

from invoke import Collection, task

from ..units import human_bytes
from . import render
from .common import H_BOUND, H_ENV, H_JSON, H_TO, H_TRUST, H_VERBOSE, ops, sink


@task(name="list", help={"env": H_ENV, "before": "only backups taken at or before: " + H_BOUND,
                         "after": "only backups taken at or after: " + H_BOUND, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backups_list(c, env=None, before=None, after=None, json_=False, verbose=False):
    """Complete backups (with a manifest), newest first; --before/--after narrow them by time."""
    from ..ops.status import list_backups

    items = list_backups(env, before=before, after=after)
    if json_:
        render.print_json(items)
        return
    render.table("backups", ["id", "revision", "size", "sha256", "reason", "age", "signed", "verified"],
                 [[b["id"], b["revision"] or "base", human_bytes(b['size']), b["sha256"][:12], b["reason"], b["age"],
                   "yes" if b["signed"] else {"unsigned": "no", "no-key": "no key"}.get(b["trust"], "BAD"),
                   "yes" if b["verified"] else ""] for b in items])


@task(name="verify", help={"to": H_TO + " (default: latest)", "env": H_ENV, "trust_unsigned": H_TRUST,
                          "sign": "sign an unsigned backup with this env's manifest key, only if the restore drill passes",
                          "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backups_verify(c, to="latest", env=None, trust_unsigned=False, sign=False, json_=False, verbose=False):
    """Restore a backup into a scratch DB, check revision/tables/rows, drop it, record the result."""
    from ..ops.verify import verify_backup

    res = verify_backup(env, to, sink=sink(verbose), trust_unsigned=trust_unsigned, sign=sign)
    if json_:
        render.print_json(res)
        return
    v = res["verification"]
    if (res.get("selection") or {}).get("form") not in (None, "id", "latest"):
        render.out.print("--to=" + str(res["selection"]["asked"]) + ": " + res["selection"]["text"], markup=False)
    if v["rows"]:
        render.table(f"backup {res['id']} verified in {v['duration_s']:.1f}s (revision {v['revision'] or 'base'})",
                     ["table", "rows"], [[t, n] for t, n in sorted(v["rows"].items())])
    render.out.print(f"[green]ok[/]: {len(v['tables'])} tables, {sum(v['rows'].values())} rows; "
                     + ("recorded in the signed manifest" if res.get("signed") else
                        "the manifest is not signed, so this result does not count (backups.verify --sign signs it)"))


@task(name="prune", help={"keep_last": "always keep the newest N backups (>= 1; default 10)",
                         "keep_days": "always keep backups younger than D days (default 30)",
                         "env": H_ENV, "yes": "really delete on a protected env (otherwise a dry run there)",
                         "dry_run": "only show what would be removed", "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backups_prune(c, keep_last=10, keep_days=30, env=None, yes=False, dry_run=False, json_=False, verbose=False):
    """Retention: keep the newest N and the last D days (never the newest verified); remove the rest."""
    from ..ops.prune import prune

    res = prune(env, keep_last, keep_days, yes=yes, dry_run=dry_run, sink=sink(verbose))
    if json_:
        render.print_json(res)
        return
    verb = "would remove" if res["dry_run"] else "removed"
    if res["removed"]:
        render.table(f"{verb} ({res['env']}, keep last {res['keep_last']}, keep {res['keep_days']:g} days)",
                     ["kind", "name", "age", "reason"],
                     [[r["kind"], r["name"], r["age"], r["reason"]] for r in res["removed"]])
    render.out.print(f"{len(res['removed'])} to remove, {len(res['kept'])} kept"
                     + (f"; dry run ({res['dry_run_reason']}): nothing was deleted"
                        + ("; add --yes to delete" if res["dry_run_reason"] != "--dry-run" else "") if res["dry_run"] else ""),
                     markup=False)


def collection() -> Collection:
    backups = Collection("backups")
    backups.add_task(backups_list, name="list")
    backups.add_task(backups_verify, name="verify")
    backups.add_task(backups_prune, name="prune")
    return backups
