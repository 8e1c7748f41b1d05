"""``invoke migrations.*``: thin, safe wrappers over Alembic.

- ``new``: ``alembic revision`` through the command API, with the next readable id
  (``0014`` after ``0013``) instead of a random hex one;
- ``history``: the revision graph, newest first (id, parent, message, file), optionally marking
  what an env has applied;
- ``upgrade`` / ``downgrade``: run as playbooks built here, so they get the pipeline's
  advisory lock, journal, confirmation, a backup first on protected envs (or with
  ``--backup``) and, when a revision fails after that backup, the restore of it.
"""

from __future__ import annotations

import re

from ..config import Playbook, StepSpec
from ..database import migrations as mig
from ..errors import ConfigError


def next_id() -> str:
    numeric = [r for r in mig.history().files if re.fullmatch(r"[0-9]+", r)]
    nums = [int(r) for r in numeric]
    width = max([4] + [len(r) for r in numeric])
    return f"{(max(nums) if nums else 0) + 1:0{width}d}"


def new_revision(message: str | None) -> dict:
    from alembic import command

    message = (message or "").strip()
    if not message:
        raise ConfigError("-m/--message is required: what the revision does", 'e.g. invoke migrations.new -m "add pets.allergies"')
    parent = mig.head()
    rid = next_id()
    script = command.revision(mig.alembic_config(), message=message, rev_id=rid)
    sc = script if not isinstance(script, list) else script[0]
    return {"id": sc.revision, "down_revision": sc.down_revision, "message": message, "file": str(sc.path),
            "parent": parent}


def history(env_name: str | None = None) -> list[dict]:
    """Newest first: id, down_revision, message, file, head; with an env also applied/current."""
    graph = mig.history()
    current = None
    applied: set[str] = set()
    if env_name:
        from ..pipeline import run_context

        with run_context(env_name, "migrations.history", journaled=False) as ctx:
            with ctx.access.engine().connect() as conn:
                current = mig.current(conn)
        if current and mig.known(current):
            applied = set(mig.chain(None, current))
    out = []
    for rid in reversed(graph.order):
        rf = graph.files[rid]
        downs = rf.down_revisions
        row = {"id": rid, "down_revision": downs[0] if len(downs) == 1 else (list(downs) or None),
               "message": rf.message(), "file": rf.path.name, "head": rid in graph.heads}
        if env_name:
            row["applied"] = rid in applied
            row["current"] = rid == current
        out.append(row)
    return out


def upgrade_playbook() -> Playbook:
    return Playbook(
        name="migrations.upgrade",
        description="lock -> validate (to --to) -> preflight -> plan -> confirm -> backup (protected, or a "
                    "destructive revision acknowledged) -> verify (then) -> migrate -> post-check",
        steps=[StepSpec(step="lock"), StepSpec(step="fence", name="fence-repair", options={"repair_only": True}),
               StepSpec(step="validate"), StepSpec(step="preflight"),
               StepSpec(step="plan", options={"rehearse": False}),
               StepSpec(step="confirm"), StepSpec(step="accept_drift"),
               StepSpec(step="backup", options={"reason": "pre-upgrade"}, when="backup_first"),
               StepSpec(step="verify"),
               StepSpec(step="migrate", when="run_migrations"),
               StepSpec(step="postcheck", options={"http": False})],
        on_failure_after="backup",
        on_failure=[StepSpec(step="restore", options={"backup": "this_run"}),
                    StepSpec(step="postcheck", options={"rows": False, "http": False})],
        path="(built in: vetai_ops.ops.revisions.upgrade_playbook)",
    )


def downgrade_playbook() -> Playbook:
    return Playbook(
        name="migrations.downgrade",
        description="lock -> plan (protected needs --yes) -> confirm -> backup (protected) -> downgrade -> post-check",
        steps=[StepSpec(step="lock"), StepSpec(step="fence", name="fence-repair", options={"repair_only": True}),
               StepSpec(step="downgrade_plan"), StepSpec(step="confirm"),
               StepSpec(step="backup", options={"reason": "pre-downgrade"}, when="backup_first"),
               StepSpec(step="downgrade"),
               StepSpec(step="postcheck", options={"http": False, "rows": False})],
        on_failure_after="backup",
        on_failure=[StepSpec(step="restore", options={"backup": "this_run"}),
                    StepSpec(step="postcheck", options={"rows": False, "http": False})],
        path="(built in: vetai_ops.ops.revisions.downgrade_playbook)",
    )


def upgrade(env_name: str | None, *, to: str | None = "head", yes: bool = False, dry_run: bool = False,
            backup: bool = False, allow=(), accept_drift=(), sink=None, confirm=None) -> dict:
    """``migrations.upgrade``: to ``to`` (default head), a backup first on ``backup`` or a
    protected env (:func:`vetai_ops.policy.backup_first`). Returns the run's report."""
    from ..config import load_inventory
    from ..pipeline import run_playbook
    from ..policy import backup_first

    target = resolve_target(to)
    opts = {"target": target, "yes": yes, "dry_run": dry_run, "allow": list(allow or []),
            "accept_drift": list(accept_drift or []),
            "backup_first": backup_first(load_inventory().env(env_name), asked=backup)}
    return run_playbook("migrations.upgrade", env_name, options=opts, sink=sink, confirm=confirm,
                        playbook=upgrade_playbook())


def downgrade(env_name: str | None, *, to: str | None, yes: bool = False, dry_run: bool = False,
              backup: bool = False, sink=None, confirm=None) -> dict:
    """``migrations.downgrade`` to ``to``: a backup first on ``backup`` or a protected env,
    which also needs ``yes`` (the downgrade_plan step). Returns the run's report."""
    from ..config import load_inventory
    from ..pipeline import run_playbook
    from ..policy import backup_first

    opts = {"to": to, "yes": yes, "dry_run": dry_run,
            "backup_first": backup_first(load_inventory().env(env_name), asked=backup)}
    return run_playbook("migrations.downgrade", env_name, options=opts, sink=sink, confirm=confirm,
                        playbook=downgrade_playbook())


def resolve_target(to: str | None) -> str | None:
    """--to for upgrade: a known revision id, or head (default)."""
    if not to or to == "head":
        return None
    if not mig.known(to):
        raise ConfigError(f"--to={to!r} is not a revision of this history", "see `invoke migrations.history`")
    return to
