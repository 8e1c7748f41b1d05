"""Record the schema drift this run accepts (``--accept-drift=``), before the backup.

``preflight`` compared the live schema with the reference at its revision and refused any
difference neither recorded as accepted nor named on the command line; the ones named are
written here to ``vetai_ops_accepted_drift`` (who, when, revision, action), after the
confirmation and before the backup, so that a restore of this run's backup keeps them.
"""

from __future__ import annotations

from ..database.drift import record
from . import step


@step("accept_drift")
def accept_drift(ctx):
    chosen = ctx.state.drift_accepting
    if not chosen:
        return "nothing to accept"
    with ctx.access.connect() as conn:  # one transaction, committed on a clean exit
        record(conn, chosen, by=ctx.operator, revision=ctx.state.from_rev, action=ctx.action,
               run_id=ctx.run_id)
    ctx.emit("warning", f"schema drift accepted by {ctx.operator}: " + "; ".join(str(d) for d in chosen))
    return f"{len(chosen)} difference(s) accepted: {', '.join(d.id for d in chosen)}"
