"""``invoke migrations.*``: new, history, upgrade, downgrade (``vetai_ops.ops.revisions``)."""

from __future__ import annotations

from invoke import Collection, task

from . import render
from .common import H_ACCEPT_DRIFT, H_ENV, H_JSON, H_VERBOSE, H_YES, confirm, ops, sink


@task(name="new", help={"message": "what the revision does (becomes the docstring and the file name)",
                        "verbose": H_VERBOSE})
@ops
def migrations_new(c, message=None, verbose=False):
    """Create a new revision file with the next readable id (0014 after 0013)."""
    from ..ops.revisions import new_revision

    r = new_revision(message)
    render.out.print(f"created {r['id']} (after {r['down_revision']}): {r['file']}", markup=False)


@task(name="history", help={"env": "also mark which revisions this env has applied", "json": H_JSON,
                            "verbose": H_VERBOSE})
@ops
def migrations_history(c, env=None, json_=False, verbose=False):
    """The Alembic history, newest first: id, parent, message, file."""
    from ..ops.revisions import history as hist

    rows = hist(env)
    if json_:
        render.print_json(rows)
        return
    cols = ["id", "parent", "message", "file"] + (["applied"] if env else [])
    render.table("migrations", cols,
                 [[r["id"] + (" (head)" if r["head"] else ""), r["down_revision"], r["message"].split(":")[0][:60], r["file"]]
                  + ([("current" if r["current"] else "yes") if r["applied"] else ""] if env else []) for r in rows])


@task(name="upgrade", help={"env": H_ENV, "to": "revision to upgrade to (default: head)", "yes": H_YES,
                           "dry_run": "show the plan and stop", "backup": "take a backup first even on an unprotected env",
                           "allow": "acknowledge a destructive operation (repeatable)",
                           "accept_drift": H_ACCEPT_DRIFT, "json": H_JSON,
                           "verbose": H_VERBOSE}, iterable=["allow", "accept_drift"])
@ops
def migrations_upgrade(c, env=None, to="head", yes=False, dry_run=False, backup=False, allow=None, accept_drift=None,
                       json_=False, verbose=False):
    """Alembic upgrade to --to, with the lock, validation, confirmation, and a backup first on protected envs."""
    from ..ops.revisions import upgrade

    report = upgrade(env, to=to, yes=yes, dry_run=dry_run, backup=backup, allow=allow, accept_drift=accept_drift,
                     sink=sink(verbose), confirm=confirm())
    if json_:
        render.print_json({"ok": True, "report": report})


@task(name="downgrade", help={"env": H_ENV, "to": "revision to go down to (required; 'base' for an empty schema)",
                             "yes": "required on protected envs (a downgrade can drop data)",
                             "dry_run": "show the plan and stop", "backup": "take a backup first even on an unprotected env",
                             "json": H_JSON, "verbose": H_VERBOSE})
@ops
def migrations_downgrade(c, env=None, to=None, yes=False, dry_run=False, backup=False, json_=False, verbose=False):
    """Alembic downgrade to --to: lock, a backup first on protected envs, refused there without --yes."""
    from ..ops.revisions import downgrade

    report = downgrade(env, to=to, yes=yes, dry_run=dry_run, backup=backup, sink=sink(verbose), confirm=confirm())
    if json_:
        render.print_json({"ok": True, "report": report})


def collection() -> Collection:
    migrations = Collection("migrations")
    for name, t in (("new", migrations_new), ("history", migrations_history), ("upgrade", migrations_upgrade),
                    ("downgrade", migrations_downgrade)):
        migrations.add_task(t, name=name)
    return migrations
