"""Downgrade (``invoke migrations.downgrade``): revert applied revisions down to ``--to``.

``downgrade_plan`` refuses what must not happen (unknown revisions, a target that is not
below the current revision, a protected env without ``--yes``) and states the plan;
``downgrade`` runs Alembic's downgrade one transaction per revision, with the env's
lock/statement timeouts, removing each reverted revision's row from ``vetai_ops_applied``.
"""

from __future__ import annotations

import time

from .. import policy
from ..database import migrations as mig
from ..errors import ConfigError, GateRefused, StopPipeline, short_error
from ..plan import DowngradePlan
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
    ctx.state.db_touched = True
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
    policy.refuse_downgrade(ctx.env, yes=bool(ctx.options.get("yes")), dry_run=bool(ctx.options.get("dry_run")),
                            what=f"{current} -> {target or 'base'}, reverting {', '.join(reverting)}")
    files = mig.history().files
    for r in reverting:
        ctx.emit("info", f"- revert {r}: {files[r].message()}")
    ctx.state.from_rev, ctx.state.to_rev, ctx.state.expect_rev = current, target, target
    ctx.state.plan = DowngradePlan.of(ctx.env, from_rev=current, to_rev=target, backup_store=ctx.store.location,
                                      reverting=reverting, created=time.time())
    return f"{current} -> {target or 'base'} ({len(reverting)} revisions to revert)"


def _downgrade_blockers(ctx, current: str | None) -> list[str]:
    """Why this run's recovery must restore rather than downgrade (empty: it may downgrade)."""
    from ..validate.rules import downgrade_risks

    if not ctx.env.downgrade_on_failure:
        return ["downgrade_on_failure is off"]
    start = ctx.state.from_rev
    if current is not None and not mig.known(current):
        return [f"the database is at {current}, unknown to this checkout"]
    if current != start and (current is None or not mig.is_ancestor(start, current)):
        return [f"the database is at {current or 'base'}, not after the deploy's start {start or 'base'}"]
    if ctx.state.first_deploy or ctx.options.get("first_deploy"):
        return ["a first deploy (its seeds are not reverted by a downgrade)"]
    reasons = []
    applied = mig.chain(start, current) if current != start else []
    for rev in applied:
        reasons += downgrade_risks(mig.history().files[rev])
    # the revision that failed ran in a transaction that rolled back, unless part of it ran
    # outside one (autocommit_block): then what it left is unknown
    pending = [r for r in ctx.state.pending if r not in applied]
    if ctx.state.failed_step == "migrate" and pending:
        if "autocommit_block" in mig.history().files[pending[0]].text:
            reasons.append(f"{pending[0]} failed and runs part of its work outside a transaction (autocommit_block)")
    return reasons


@step("recovery_plan")
def recovery_plan(ctx):
    """on_failure's choice: downgrade (keeps the app's writes since the backup) when the env says
    ``downgrade_on_failure`` and every revision this run applied reverts without data loss;
    otherwise restore the backup."""
    try:
        with ctx.access.engine().connect() as conn:
            current = mig.current(conn)
        blockers = _downgrade_blockers(ctx, current)
    except Exception as e:  # noqa: BLE001 - cannot tell: the backup is the safe way back
        current, blockers = None, [f"could not inspect the database: {short_error(e)}"]
    ok = not blockers
    ctx.state.downgrade_recovery = ok
    if not ctx.env.downgrade_on_failure:
        return None  # the default: restore, nothing to report
    if ok:
        return (f"downgrade {current or 'base'} -> {ctx.state.from_rev or 'base'}: every applied revision "
                "reverts without data loss, so the app's writes since the backup are kept")
    if ctx.env.downgrade_on_failure:
        ctx.emit("warning", "downgrade_on_failure is set, but the backup is restored instead: " + "; ".join(blockers))
    return "restore the backup (" + "; ".join(blockers) + ")"


@step("downgrade")
def downgrade(ctx, to: str | None = None):
    if to != "pre_deploy":
        target = ctx.state.to_rev
        timings = run_alembic(ctx, "downgrade", target)
        return f"{len(timings)} revisions reverted -> {target or 'base'}"
    # on_failure: back to where the deploy started, keeping the app's writes; a failure here
    # falls back to restoring the backup (the next on_failure step)
    target = ctx.state.from_rev
    lk = ctx.state.lock
    if lk is not None:
        retaken = lk.ensure("the recovery downgrade", retake=True)
        if retaken:
            ctx.emit("warning", retaken)
    applied = ctx.state.revisions
    try:
        timings = run_alembic(ctx, "downgrade", target)
    except Exception as e:  # noqa: BLE001
        ctx.state.downgrade_recovery = False
        ctx.emit("warning", f"the recovery downgrade failed ({short_error(e)}); restoring the backup instead")
        return "failed; restoring the backup instead"
    finally:
        ctx.state.revisions = applied  # the report's revisions are the deploy's; the recovery's are its step's
    st = ctx.state
    st.expect_rev, st.recovered_by, st.writes_since_backup, st.kept_as = target, "downgrade", {}, None
    return f"{len(timings)} revisions reverted -> {target or 'base'}; the app's writes since the backup are kept"
