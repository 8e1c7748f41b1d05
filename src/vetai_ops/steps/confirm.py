"""Plan and confirmation: what a run would do, and the operator's go-ahead on protected envs."""

from __future__ import annotations

from .. import policy
from ..errors import GateRefused, StopPipeline
from ..plan import RollbackPlan
from . import step


@step("rollback_plan")
def rollback_plan(ctx):
    """What a rollback will do, shown before the operator confirms it: the backup ``--to``
    selects (signed only, unless ``--trust-unsigned``), how it was read, the deploys it undoes,
    and the app's writes since it that the restore would set aside. The restore step restores
    this very backup (``rollback_id``), read again by its id."""
    from ..database import migrations as mig
    from ..database import writestats
    from ..database.history import read as read_history

    rows: list = []

    def history() -> list:  # read once, and only when a form or the plan needs it
        if not rows:
            rows.append(read_history(ctx.access.connect, limit=500))
        return rows[0]

    sel = ctx.catalog.select(ctx.options.get("to"), history=history, explain=True,
                             trust_unsigned=bool(ctx.options.get("trust_unsigned")))
    m = sel.manifest
    ctx.state.rollback_id = m.id  # what the operator confirms is what gets restored
    ctx.state.selection = sel.to_json()  # how --to was read, and the journaled deploys it undoes
    from ..database import retired
    from ..store.manifest import new_id

    # the name the live database will be kept under, as the restore chooses it (it keeps this one)
    kept_as = retired.unused_name(ctx.access.admin, ctx.env.database.name, m.id, new_id())
    with ctx.access.connect() as c:
        current = mig.current(c)
        # what the restore will set aside: shown before the operator types the env name
        writes, notes = writestats.since(m.write_stats, writestats.snapshot(c))
    ctx.state.plan = RollbackPlan.of(
        ctx.env, from_rev=current, to_rev=m.revision, backup_store=ctx.store.url(m.dump_key),
        restore=m.id, restore_size=m.size, restore_signed=m.signed, selection=ctx.state.selection,
        writes_since_backup=writes, writes_notes=notes, kept_as=kept_as)
    ctx.emit("plan", "", **ctx.state.plan.to_json())
    return f"backup {m.id} (revision {m.revision or 'base'})"


@step("confirm")
def confirm(ctx, defer_to_rehearsal: bool = False, rehearsed: bool = False):
    """The operator's go-ahead on a protected env (``--dry-run`` stops here), on the plan a
    step before stated (``plan``, ``rollback_plan``, ``downgrade_plan``, ``adopt_check``).

    In deploy.yml the first confirm has ``defer_to_rehearsal``: when this deploy rehearses
    (plan's decision), a protected env is asked by the second one (``rehearsed``), after the
    rehearsal, with the durations it measured in the plan. Until then ``confirm_deferred`` is
    set and migrate refuses to run: a playbook that defers and never asks never migrates."""
    plan = ctx.state.plan
    if rehearsed:
        if not ctx.state.confirm_deferred:
            return "not required (asked before the backup)" if ctx.env.protected else "not required"
        if not ctx.confirm(ctx.env.name, plan):
            bid = ctx.state.backup.id if ctx.state.backup is not None else None
            raise GateRefused(f"{ctx.action} on {ctx.env.name!r} not confirmed after the rehearsal; the live database "
                              f"was not touched (backup {bid} was taken)")
        ctx.state.confirm_deferred = False
        return "confirmed after the rehearsal"
    if ctx.options.get("dry_run"):
        raise StopPipeline("dry run: nothing changed")
    if not policy.asks(ctx.env, yes=bool(ctx.options.get("yes"))):
        return "not required" if not ctx.env.protected else "--yes"
    policy.refuse_unconfirmed(ctx.env, can_ask=ctx.confirm is not None)
    if defer_to_rehearsal and ctx.state.rehearsal.get("will"):
        ctx.state.confirm_deferred = True
        ctx.emit("info", "you will be asked to confirm after the rehearsal on a copy, with its measured durations")
        return "after the rehearsal"
    if not ctx.confirm(ctx.env.name, plan):
        raise GateRefused(f"{ctx.action} on {ctx.env.name!r} not confirmed; nothing changed")
    return "confirmed"
