"""The invoke face: the verbs that run a playbook (deploy, backup, rollback, plan, adopt),
and the whole task collection (the read-only verbs are in views.py; backups.*,
migrations.* and sandbox.* have a file each). A task parses its flags, calls the use-case
layer (``vetai_ops.ops``, imported when the task runs: ``invoke --list`` loads none of it)
and renders what comes back."""

from __future__ import annotations

from invoke import Collection, task

from . import backups, migrations, render, sandbox, views
from .common import H_ACCEPT_DRIFT, H_ENV, H_JSON, H_TO, H_TRUST, H_VERBOSE, H_YES, confirm, ops, sink


@task(help={"env": H_ENV, "yes": H_YES, "dry_run": "show the plan and stop; nothing changes",
            "allow": "acknowledge a destructive operation of a pending revision (repeatable), e.g. --allow='drop_column pets.name', or a big table rewrite: --allow='rewrite pets'",
            "skip_backup": "skip the pre-deploy backup (refused on protected envs)",
            "no_rehearsal": "do not rehearse the pending revisions on a copy of the data first (refused on "
                            "protected envs; see deploy.rehearsal in the inventory)",
            "accept_drift": H_ACCEPT_DRIFT,
            "json": H_JSON, "verbose": H_VERBOSE}, iterable=["allow", "accept_drift"])
@ops
def deploy(c, env=None, yes=False, dry_run=False, allow=None, skip_backup=False, no_rehearsal=False, accept_drift=None,
           json_=False, verbose=False):
    """Validate -> backup -> rehearse on a copy -> migrate -> post-check; restore the backup on any failure."""
    from ..ops import runs

    report = runs.deploy(env, yes=yes, dry_run=dry_run, allow=allow, skip_backup=skip_backup,
                         no_rehearsal=no_rehearsal, accept_drift=accept_drift, sink=sink(verbose), confirm=confirm())
    if json_:
        render.print_json({"ok": True, "report": report})
    elif report.get("outcome") == "success":
        render.out.print(
            f"deployed {report['env']}: {report.get('from_rev') or 'base'} -> {report.get('to_rev') or 'base'}"
            + (f"; backup {report['backup_id']} at {report.get('backup_url')}" if report.get("backup_id") else ""),
            markup=False,
        )


@task(help={"env": H_ENV, "json": H_JSON, "verbose": H_VERBOSE})
@ops
def backup(c, env=None, json_=False, verbose=False):
    """pg_dump streamed through sha256 into the store; the manifest is written last."""
    from ..ops import runs

    report = runs.backup(env, sink=sink(verbose), confirm=confirm())
    if json_:
        render.print_json({"ok": True, "id": report.get("backup_id"), "url": report.get("backup_url"), "report": report})
    else:
        render.out.print(f"backup {report.get('backup_id')} -> {report.get('backup_url')}", markup=False)


@task(help={"to": H_TO + " (see backups.list)", "env": H_ENV, "yes": H_YES, "trust_unsigned": H_TRUST, "json": H_JSON,
            "verbose": H_VERBOSE})
@ops
def rollback(c, to=None, env=None, yes=False, trust_unsigned=False, json_=False, verbose=False):
    """Restore a backup safely: verify, restore into a new DB, check, swap, post-check.

    --to takes an id or prefix, latest, a time (2026-12-02T05:40:00Z, '2026-12-02 05:40'; no zone = UTC),
    --to=-2h, or pre-deploy (undo the last deploy)."""
    from ..ops import runs

    report = runs.rollback(env, to=to, yes=yes, trust_unsigned=trust_unsigned, sink=sink(verbose), confirm=confirm())
    if json_:
        render.print_json({"ok": True, "report": report})
    else:
        sel = report.get("selection") or {}
        render.out.print(f"rolled back to {report.get('restored_id')} (revision {report.get('to_rev') or 'base'})"
                         + "".join(f"; undid {ev.get('text')}" for ev in sel.get("undid") or []), markup=False)


@task(help={"env": H_ENV, "json": H_JSON, "allow": "acknowledge a destructive operation (repeatable)",
            "accept_drift": H_ACCEPT_DRIFT + " (shown, not recorded: plan changes nothing)", "verbose": H_VERBOSE},
      iterable=["allow", "accept_drift"])
@ops
def plan(c, env=None, allow=None, accept_drift=None, json_=False, verbose=False):
    """What a deploy would do: steps, hosts, pending revisions with SQL and findings. Changes nothing."""
    from ..ops import runs

    report = runs.plan(env, allow=allow, accept_drift=accept_drift, sink=sink(verbose), confirm=confirm())
    if json_:
        render.print_json(report)  # report["plan"]: hosts, from/to, pending, sql, findings
        return
    render.plan_sql(report.get("plan") or {})


@task(help={"env": H_ENV, "yes": H_YES, "json": H_JSON, "verbose": H_VERBOSE,
            "table": "TypeORM's migrations table, when the backend sets migrationsTableName (default: migrations)",
            "accept_drift": "accept the schema differences found (bare flag: every one listed; or name them, "
                            "comma-separated, as kind:name): recorded with who/when, then stamped"},
      optional=["accept_drift"])
@ops
def adopt(c, env=None, yes=False, json_=False, verbose=False, table=None, accept_drift=None):
    """Take over a TypeORM-built DB: map its migrations table, check the schema, alembic stamp."""
    from ..ops.adopt import adopt as do_adopt

    res = do_adopt(env, yes=yes, table=table, sink=sink(verbose), confirm=confirm(adopt=True),
                   accept_drift=accept_drift)
    if json_:
        render.print_json(res)
        return
    pend = res.get("pending") or []
    render.out.print(f"adopted {res['database']} at revision {res['stamped']} (TypeORM {res['typeorm_last']}); "
                     + (f"{len(pend)} pending: run `invoke deploy --env={res['env']}`" if pend else "up to date with head"),
                     markup=False)


def build_collection() -> Collection:
    ns = Collection()
    for t in (deploy, backup, rollback, plan, views.status, views.check, views.validate, views.history):
        ns.add_task(t)
    ns.add_collection(backups.collection())
    ns.add_task(adopt)
    ns.add_collection(migrations.collection())
    ns.add_collection(sandbox.collection())
    return ns
