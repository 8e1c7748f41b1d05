"""One deploy at a time per env: a session-level PostgreSQL advisory lock.

The lock lives on a connection to the server's maintenance database (so the live
database can be renamed during a restore swap), keyed by the target database name.
It dies with its session: a crashed or killed operator cannot leave it behind.
A second run fails at once, naming the holder (user@host, action) and since when.
"""

from __future__ import annotations

import zlib

from sqlalchemy import text

from ..errors import LockHeld
from . import step

LOCK_CLASS = 0x7E7A  # first int4 key: "vetai-ops"


def lock_key(dbname: str) -> int:
    return zlib.crc32(dbname.encode()) - (1 << 31)


def holder(conn, dbname: str) -> dict | None:
    row = conn.execute(
        text(
            "SELECT a.application_name, a.backend_start, a.client_addr::text AS addr, a.pid"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :c AND l.objid = :o AND l.objsubid = 2"
        ),
        {"c": LOCK_CLASS, "o": lock_key(dbname) & 0xFFFFFFFF},
    ).mappings().first()
    return dict(row) if row else None


@step("lock")
def lock(ctx, **_):
    access = ctx.access
    dbname = access.db.name
    app = f"vetai-ops {ctx.action} by {ctx.operator}"[:63]
    eng = access.admin_engine()
    conn = eng.connect()
    conn.execute(text("select set_config('application_name', :a, false)"), {"a": app})
    got = conn.execute(text("select pg_try_advisory_lock(:c, :o)"), {"c": LOCK_CLASS, "o": lock_key(dbname)}).scalar()
    if not got:
        h = holder(conn, dbname) or {}
        conn.close()
        who = (h.get("application_name") or "another vetai-ops run").removeprefix("vetai-ops ")
        since = h.get("backend_start")
        since_s = since.isoformat(timespec="seconds") if since else "an unknown time"
        raise LockHeld(
            f"a deploy is in progress on env {ctx.env.name!r} (database {dbname}): {who}, since {since_s}",
            "wait for it to finish; the lock is released automatically when that run ends",
        )
    ctx._stack.callback(conn.close)  # closing the session releases the lock
    ctx.state["lock_conn"] = conn
    _repair_interrupted_swap(ctx, eng, dbname)
    return f"advisory lock on {dbname}"


def _repair_interrupted_swap(ctx, eng, dbname: str) -> None:
    """First thing under the lock: put right what a restore that died mid-swap left (a live
    DB refusing connections, a missing live name, restore copies of dead runs), and say so."""
    from ..database.swap import repair

    for what in repair(eng, dbname):
        ctx.emit("warning", f"repaired an interrupted restore: {what}")
