"""The applied-file bookkeeping (Flyway-style): ``vetai_ops_applied`` holds, per applied
revision, the file name and sha256 it was applied from. It is kept in step with Alembic in
the revision's own transaction (:class:`RevisionRun`), so an edited applied file is caught
(:func:`changed_applied`) and a half-registered revision cannot exist. The files' hashes
come from the history read with ``ast`` (:func:`file_hashes`): no revision file is imported
to know them."""

from __future__ import annotations

import time
from typing import Callable

from ..paths import versions_dir
from . import migrations as mig
from . import writestats

APPLIED_DDL = """
CREATE TABLE IF NOT EXISTS vetai_ops_applied (
    revision text PRIMARY KEY,
    file text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer
)
"""


def file_hashes() -> dict[str, tuple[str, str]]:
    """revision -> (file name, sha256) for every revision file of the history in use, as read
    (memoized on those bytes); a broken graph does not stop it (the validate step names it)."""
    from ..validate.graph import load

    return load(versions_dir()).hashes()


def applied_hashes(conn) -> dict[str, tuple[str, str]]:
    from sqlalchemy import text  # SQLAlchemy-land: a migrate, a validate

    if not conn.execute(text("select to_regclass('public.vetai_ops_applied')")).scalar():
        return {}
    rows = conn.execute(text("select revision, file, sha256 from vetai_ops_applied")).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def changed_applied(conn) -> list[str]:
    """Applied revisions whose file changed since it was applied (messages)."""
    files = file_hashes()
    out = []
    for rev, (fname, sha) in applied_hashes(conn).items():
        if rev not in files:
            continue  # unknown revisions are caught by the ancestry check
        if files[rev][1] != sha:
            out.append(f"revision {rev} ({files[rev][0]}) was edited after it was applied (sha256 {sha[:12]} -> {files[rev][1][:12]})")
    return out


class RevisionRun:
    """One Alembic upgrade/downgrade, one transaction per revision, under the env's timeouts.
    In each revision's transaction its ``vetai_ops_applied`` row is written (upgrade) or
    removed (downgrade) and the rows it wrote itself are counted (``own_writes``: a
    restore's report leaves them out of the app's writes). ``timings`` and ``own_writes``
    hold what was applied even when a later revision fails."""

    def __init__(self, files: dict[str, tuple[str, str]] | None = None):
        self.files = files if files is not None else file_hashes()
        self.timings: list[dict] = []
        self.own_writes: dict = {}

    def run(self, engine, direction: str, target: str | None, *, lock_timeout, statement_timeout,
            on_start: Callable[[], None] | None = None, on_applied: Callable[[dict], None] | None = None) -> list[dict]:
        """``on_start``: called once the first revision may change the database;
        ``on_applied(timing)``: after each revision, inside its transaction."""
        from sqlalchemy import text  # Alembic's run

        clock = {"t": time.monotonic()}

        def on_version_apply(*, ctx, step, heads, run_args):  # noqa: ARG001 - alembic's signature
            now = time.monotonic()
            dur = round(now - clock["t"], 3)
            clock["t"] = now
            rev = step.up_revision_id
            if step.is_upgrade:
                fname, sha = self.files.get(rev, ("?", "?"))
                ctx.connection.execute(
                    text("INSERT INTO vetai_ops_applied (revision, file, sha256, duration_ms) VALUES (:r, :f, :s, :d)"
                         " ON CONFLICT (revision) DO UPDATE SET file = EXCLUDED.file, sha256 = EXCLUDED.sha256,"
                         " applied_at = now(), duration_ms = EXCLUDED.duration_ms"),
                    {"r": rev, "f": fname, "s": sha, "d": int(dur * 1000)},
                )
            else:
                ctx.connection.execute(text("DELETE FROM vetai_ops_applied WHERE revision = :r"), {"r": rev})
            writestats.add_into(self.own_writes, writestats.own_transaction_writes(ctx.connection))
            timing = {"revision": rev, "upgrade": step.is_upgrade, "duration_s": dur}
            self.timings.append(timing)
            if on_applied:
                on_applied(timing)

        with engine.connect() as conn:
            conn.execute(text(APPLIED_DDL))
            conn.commit()
            mig.set_timeouts(conn, lock_timeout, statement_timeout)
            if on_start:
                on_start()
            if direction == "upgrade":
                mig.upgrade(conn, target, on_version_apply=on_version_apply)
            else:
                mig.downgrade(conn, target or "base", on_version_apply=on_version_apply)
        return self.timings
