"""Plan and confirmation: what a run would do, and the operator's go-ahead on protected envs."""

from __future__ import annotations

from ..errors import GateRefused, StopPipeline
from . import step


@step("confirm")
def confirm(ctx, **_):
    plan = ctx.state.get("plan", {})
    if ctx.options.get("dry_run"):
        raise StopPipeline("dry run: nothing changed")
    if ctx.action == "deploy" and not plan.get("pending") and not ctx.options.get("run_seeds_forced"):
        ctx.state["nothing_to_do"] = True
    if not ctx.env.protected or ctx.options.get("yes"):
        return "not required" if not ctx.env.protected else "--yes"
    if ctx.confirm is None:
        raise GateRefused(
            f"env {ctx.env.name!r} is protected and no terminal is attached to confirm",
            "re-run with --yes once you have reviewed `invoke plan`",
        )
    if not ctx.confirm(ctx.env.name, plan):
        raise GateRefused(f"{ctx.action} on {ctx.env.name!r} not confirmed; nothing changed")
    return "confirmed"
