"""One deploy at a time per env: a session-level PostgreSQL advisory lock.

The lock lives on a connection to the server's maintenance database (so the live
database can be renamed during a restore swap), keyed by the target database name.
It dies with its session: a crashed or killed operator cannot leave it behind.
A second run fails at once, naming the holder (user@host, action) and since when.
The lock itself (and the re-check before migrate and before a swap) is
:class:`vetai_ops.database.advisory.DeployLock`, kept in ``ctx.state.lock``.
"""

from __future__ import annotations

from ..database.advisory import LOCK_CLASS, DeployLock, holder, lock_key  # noqa: F401 - re-exported
from . import step


@step("lock")
def lock(ctx):
    access = ctx.access
    dbname = access.db.name
    lk = DeployLock(access.admin, ctx.env.name, dbname, f"vetai-ops {ctx.action} by {ctx.operator}")
    lk.acquire()
    ctx.on_close(lk.close)  # closing the session releases the lock
    ctx.state.lock = lk
    _repair_interrupted_swap(ctx, access.admin, dbname)
    return f"advisory lock on {dbname}"


def _repair_interrupted_swap(ctx, maint, dbname: str) -> None:
    """First thing under the lock: put right what a restore that died mid-swap left (a live
    DB refusing connections, a missing live name, restore copies of dead runs), drop the
    scratch databases killed runs left (database/scratch.py), and say so."""
    from ..database.scratch import drop_dead
    from ..database.swap import repair

    for what in repair(maint, dbname):
        ctx.emit("warning", f"repaired an interrupted restore: {what}")
    for what in drop_dead(maint, dbname):  # a killed run's drift reference or backup drill
        ctx.emit("warning", f"cleaned up after a killed run: {what}")
