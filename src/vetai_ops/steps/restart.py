"""Restart app services over the app hosts, in batches (only when the env defines a command).

``services.batch`` hosts restart at once; each batch's hosts must then pass the health
checks (``checks.http``, all hosts of the batch at once) before the next batch starts.
A host fails when its restart command fails or its health check does. Once MORE than
``services.max_fail`` hosts failed, the rollout stops (the hosts not yet reached are left
alone and named) and the step fails, so a deploy restores its backup.

``failures: warn`` (the on_failure handler, after a restore): restart every host whatever
fails, and report the failures in the summary instead of failing the recovery.
"""

from __future__ import annotations

import time

from ..errors import OpsError, short_error
from ..targets.fleet import each_host, summary
from ..targets.health import check_hosts
from ..targets.health import failures as failed_checks
from . import step


@step("restart")
def restart(ctx, failures: str = "stop"):
    svc = ctx.env.services
    argv = svc.restart
    if not argv:
        return "no restart command configured"
    if failures not in ("stop", "warn"):
        raise OpsError(f"restart: unknown option failures={failures!r}", "use failures: stop (default) or warn")
    targets = list(ctx.app_targets)
    batches = [targets[i:i + svc.batch] for i in range(0, len(targets), svc.batch)]
    outcomes = []
    failed: dict[str, str] = {}  # host -> why, in the order they failed
    restarted: list[str] = []
    for n, batch in enumerate(batches, 1):
        if n > 1 and svc.rolling_delay:
            time.sleep(svc.rolling_delay)
        if len(batches) > 1:
            ctx.emit("info", f"batch {n}/{len(batches)}: {', '.join(t.name for t in batch)}", batch=n)
        up = []
        for o in each_host(batch, lambda t: t.run(argv, timeout=300), forks=svc.forks):
            outcomes.append(o)
            if o.ok:
                up.append(o.target)
                restarted.append(o.host)
                ctx.emit("info", f"restarted on {o.host} ({o.duration_s:.2f}s)", host=o.host, ok=True,
                         duration_s=round(o.duration_s, 3))
            else:
                failed[o.host] = f"restart: {short_error(o.error)}"
                ctx.emit("warning", f"restart on {o.host}: FAILED ({o.duration_s:.2f}s) {short_error(o.error)}",
                         host=o.host, ok=False, duration_s=round(o.duration_s, 3))
        # the batch's gate: its restarted hosts answer their health checks before the next batch
        gate = check_hosts(up, ctx.env.checks, forks=svc.forks, emit=ctx.emit)
        for host, res in gate.items():
            fails = failed_checks(res)
            if fails:
                failed[host] = "health: " + "; ".join(f"{u}: {d}" for u, d in fails)
        if failures == "stop" and len(failed) > svc.max_fail:
            rest = [t.name for b in batches[n:] for t in b]
            ctx.emit("info", summary("restart", outcomes, set(failed)))
            raise OpsError(
                f"rollout stopped after batch {n} of {len(batches)}: {len(failed)} host(s) failed, more than "
                f"services.max_fail ({svc.max_fail}): " + "; ".join(f"{h}: {w}" for h, w in failed.items())
                + (f"; not restarted: {', '.join(rest)}" if rest else ""),
                "fix the failing host(s) and deploy again, or raise services.max_fail to tolerate them",
            )
    if len(targets) > 1:
        ctx.emit("info", summary("restart", outcomes, set(failed)))
    ok = [h for h in restarted if h not in failed]
    out = "restarted on " + (", ".join(ok) if ok else "no host")
    if failed:
        what = "RESTART FAILED" if failures == "warn" else f"failed (within services.max_fail {svc.max_fail})"
        ctx.emit("warning", f"{what} on " + "; ".join(f"{h}: {w}" for h, w in failed.items()))
        out += f"; {what} on " + "; ".join(f"{h}: {w}" for h, w in failed.items())
    return out
