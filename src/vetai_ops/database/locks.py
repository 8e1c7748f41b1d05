"""The "backup in progress" advisory lock: every backup holds it SHARED on the DB server
(several backups may run at once), and ``backups.prune`` refuses while anyone holds it, so
that it never aborts the multipart upload or deletes the dump of a backup that is still
being written, however long that backup runs.

Session-level, on a connection to the maintenance database, keyed by the target database
name like the deploy lock (``steps/lock.py``) but in its own class: it dies with the
backup's session, so a killed backup never leaves it behind.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Engine

BACKUP_CLASS = 0x7E7B  # first int4 key ("vetai-ops" deploy lock is 0x7E7A)


def _key(dbname: str) -> int:
    return zlib.crc32(dbname.encode()) - (1 << 31)


@contextlib.contextmanager
def backup_in_progress(engine: Engine, dbname: str, label: str) -> Iterator[None]:
    """Hold the shared backup lock of ``dbname`` for the body (``label`` names the holder)."""
    conn = engine.connect()
    try:
        conn.execute(text("select set_config('application_name', :a, false)"), {"a": label[:63]})
        conn.execute(text("select pg_advisory_lock_shared(:c, :o)"), {"c": BACKUP_CLASS, "o": _key(dbname)})
        yield
    finally:
        conn.close()  # ends the session: releases the lock


def running_backups(engine: Engine, dbname: str) -> list[dict]:
    """The sessions that hold the backup lock of ``dbname`` now (application name, since)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                 " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :c AND l.objid = :o AND l.objsubid = 2"
                 " ORDER BY a.backend_start"),
            {"c": BACKUP_CLASS, "o": _key(dbname) & 0xFFFFFFFF},
        ).mappings().all()
    return [dict(r) for r in rows]
