"""Downgrade (``invoke migrations.downgrade``): revert applied revisions down to ``--to``.

``downgrade_plan`` refuses what must not happen (unknown revisions, a target that is not
below the current revision, a protected env without ``--yes``) and states the plan;
``downgrade`` runs Alembic's downgrade one transaction per revision, with the env's
lock/statement timeouts, removing each reverted revision's row from ``vetai_ops_applied``.
"""

from __future__ import annotations

import time

from ..database import migrations as mig
from ..errors import ConfigError, GateRefused, StopPipeline
from . import run_alembic, step


@step("downgrade_plan")
def downgrade_plan(ctx):
    to = ctx.options.get("to")
    if not to:
        raise ConfigError("--to is required: the revision to go down to (or 'base')",
                          "see `invoke migrations.history --env=" + ctx.env.name + "`")
    target = None if to == "base" else str(to)
    if target is not None and not mig.known(target):
        raise ConfigError(f"--to={to!r} is not a revision of this history", "see `invoke migrations.history`")
    with ctx.access.engine().connect() as conn:
        current = mig.current(conn)
    ctx.state["db_touched"] = True
    if current is not None and not mig.known(current):
        raise GateRefused(f"the database is at revision {current}, unknown to this checkout; nothing changed")
    if current == target:
        raise StopPipeline(f"already at {target or 'base'}: nothing to downgrade")
    if current is None or not mig.is_ancestor(target, current):
        raise GateRefused(
            f"--to={to} is not below the current revision {current or 'base'}; nothing changed",
            "use `invoke migrations.upgrade` to go forward",
        )
    reverting = list(reversed(mig.chain(target, current)))  # newest first, the order they are reverted in
    if ctx.env.protected and not ctx.options.get("yes") and not ctx.options.get("dry_run"):
        raise GateRefused(
            f"env {ctx.env.name!r} is protected: a downgrade ({current} -> {target or 'base'}, reverting "
            f"{', '.join(reverting)}) needs --yes; nothing changed",
            "review `invoke migrations.history` and the revisions' downgrade(), then re-run with --yes",
        )
    sd = mig.script_directory()
    for r in reverting:
        ctx.emit("info", f"- revert {r}: {(sd.get_revision(r).doc or '').splitlines()[0] if sd.get_revision(r).doc else ''}")
    ctx.state.update(from_rev=current, to_rev=target, expect_rev=target, reverting=reverting)
    ctx.state["plan"] = {
        "env": ctx.env.name, "protected": ctx.env.protected, "db_host": ctx.env.hosts.db[0],
        "app_hosts": list(ctx.env.hosts.app), "database": ctx.env.database.name, "from": current, "to": target,
        "pending": [], "reverting": reverting, "backup_store": ctx.store.location, "created": time.time(),
    }
    return f"{current} -> {target or 'base'} ({len(reverting)} revisions to revert)"


@step("downgrade")
def downgrade(ctx):
    target = ctx.state.get("to_rev")
    timings = run_alembic(ctx, "downgrade", target)
    return f"{len(timings)} revisions reverted -> {target or 'base'}"
