"""Migrate: Alembic upgrade with lock_timeout / statement_timeout, one transaction per
revision, per-revision timings journaled and each applied file's sha256 recorded in
``vetai_ops_applied`` in the same transaction as the revision (Flyway-style)."""

from __future__ import annotations

from ..database.applied import file_hashes
from ..errors import GateRefused
from . import run_alembic, step


@step("migrate")
def migrate(ctx):
    target = ctx.state.to_rev
    pending = ctx.state.pending
    if not pending:
        return "nothing to apply"
    if ctx.state.confirm_deferred:  # deploy.yml asks after the rehearsal: no answer, no migration
        raise GateRefused(f"env {ctx.env.name!r} is protected and the deploy was never confirmed (the playbook "
                          "defers the question to after the rehearsal, and no confirm step with rehearsed: true ran); "
                          "nothing applied", "add `- step: confirm` with `options: {rehearsed: true}` before migrate")
    # what was validated is what runs: the same bytes
    files = file_hashes()
    for rev, sha in ctx.state.validated_hashes.items():
        if files.get(rev, (None, None))[1] != sha:
            raise GateRefused(f"revision {rev} ({files.get(rev, ('?',))[0]}) changed on disk after validation; nothing applied")
    lk = ctx.state.lock
    if lk is not None:
        lk.ensure("migrate")  # a lost lock: stop here, nothing applied (never an unseen second deployer)
    timings = run_alembic(ctx, "upgrade", target, files)
    return f"{len(timings)} revisions applied -> {target}"
