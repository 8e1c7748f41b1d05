"""Restart app services, rolling over the app hosts (only when the env defines a command)."""

from __future__ import annotations

import time

from . import step


@step("restart")
def restart(ctx):
    argv = ctx.env.services.restart
    if not argv:
        return "no restart command configured"
    done = []
    for i, t in enumerate(ctx.app_targets):
        if i and ctx.env.services.rolling_delay:
            time.sleep(ctx.env.services.rolling_delay)
        t.run(argv, timeout=300)
        done.append(t.name)
        ctx.emit("info", f"restarted on {t.name}")
    return "restarted on " + ", ".join(done)
