"""Migrate: Alembic upgrade with lock_timeout / statement_timeout, one transaction per
revision, per-revision timings journaled and each applied file's sha256 recorded in
``vetai_ops_applied`` in the same transaction as the revision (Flyway-style)."""

from __future__ import annotations

import time

from sqlalchemy import text

from ..database import migrations as mig
from ..database import writestats
from ..errors import GateRefused
from . import step
from .validate import APPLIED_DDL


@step("migrate")
def migrate(ctx):
    target = ctx.state.get("to_rev")
    pending = ctx.state.get("pending", [])
    if not pending:
        return "nothing to apply"
    if ctx.state.get("confirm_deferred"):  # deploy.yml asks after the rehearsal: no answer, no migration
        raise GateRefused(f"env {ctx.env.name!r} is protected and the deploy was never confirmed (the playbook "
                          "defers the question to after the rehearsal, and no confirm step with rehearsed: true ran); "
                          "nothing applied", "add `- step: confirm` with `options: {rehearsed: true}` before migrate")
    # what was validated is what runs: the same bytes
    files = mig.history_hashes()
    for rev, sha in ctx.state.get("validated_hashes", {}).items():
        if files.get(rev, (None, None))[1] != sha:
            raise GateRefused(f"revision {rev} ({files.get(rev, ('?',))[0]}) changed on disk after validation; nothing applied")
    lk = ctx.state.get("lock")
    if lk is not None:
        lk.ensure("migrate")  # a lost lock: stop here, nothing applied (never an unseen second deployer)
    timings = run_alembic(ctx, "upgrade", target, files)
    return f"{len(timings)} revisions applied -> {target}"


def run_alembic(ctx, direction: str, target: str | None, files: dict | None = None) -> list[dict]:
    """Alembic upgrade/downgrade to ``target`` with the env's timeouts, one transaction per
    revision; each revision's timing is journaled and ``vetai_ops_applied`` is kept in step
    (its file hash recorded on upgrade, its row removed on downgrade) in that same transaction."""
    files = files if files is not None else mig.history_hashes()
    timings: list[dict] = []
    clock = {"t": time.monotonic()}
    run = ctx

    def on_version_apply(*, ctx, step, heads, run_args):  # noqa: ARG001 - alembic's signature
        now = time.monotonic()
        dur = round(now - clock["t"], 3)
        clock["t"] = now
        rev = step.up_revision_id
        if step.is_upgrade:
            fname, sha = files.get(rev, ("?", "?"))
            ctx.connection.execute(
                text("INSERT INTO vetai_ops_applied (revision, file, sha256, duration_ms) VALUES (:r, :f, :s, :d)"
                     " ON CONFLICT (revision) DO UPDATE SET file = EXCLUDED.file, sha256 = EXCLUDED.sha256,"
                     " applied_at = now(), duration_ms = EXCLUDED.duration_ms"),
                {"r": rev, "f": fname, "s": sha, "d": int(dur * 1000)},
            )
        else:
            ctx.connection.execute(text("DELETE FROM vetai_ops_applied WHERE revision = :r"), {"r": rev})
        # the rows this revision itself wrote are not the app's: a restore's report leaves them out
        writestats.add_into(run.state.setdefault("own_writes", {}), writestats.own_transaction_writes(ctx.connection))
        timings.append({"revision": rev, "upgrade": step.is_upgrade, "duration_s": dur})
        verb = "" if step.is_upgrade else "reverted "
        run.emit("revision_applied", f"{verb}{rev} {dur:.2f}s", revision=rev, duration_s=dur)

    ctx.state["db_touched"] = True
    with ctx.access.engine().connect() as conn:
        conn.execute(text(APPLIED_DDL))
        conn.commit()
        db = ctx.env.database
        mig.set_timeouts(conn, db.lock_timeout, db.statement_timeout)
        ctx.state["db_changed"] = True  # from here a failure can leave revisions applied: on_failure restores
        try:
            if direction == "upgrade":
                mig.upgrade(conn, target, on_version_apply=on_version_apply)
            else:
                mig.downgrade(conn, target or "base", on_version_apply=on_version_apply)
        finally:
            ctx.state["revisions"] = timings
    return timings
