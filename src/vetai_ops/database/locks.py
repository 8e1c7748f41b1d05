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
from typing import Callable, Iterator

from .pg import dicts

BACKUP_CLASS = 0x7E7B  # first int4 key ("vetai-ops" deploy lock is 0x7E7A)


def _key(dbname: str) -> int:
    return zlib.crc32(dbname.encode()) - (1 << 31)


@contextlib.contextmanager
def backup_in_progress(maint: Callable, dbname: str, label: str) -> Iterator[None]:
    """Hold the shared backup lock of ``dbname`` for the body (``label`` names the holder).
    ``maint``: opens an autocommit connection to the maintenance database (``access.admin``)."""
    conn = maint()
    try:
        conn.execute("select set_config('application_name', %(a)s, false)", {"a": label[:63]})
        conn.execute("select pg_advisory_lock_shared(%(c)s, %(o)s)", {"c": BACKUP_CLASS, "o": _key(dbname)})
        yield
    finally:
        conn.close()  # ends the session: releases the lock


def running_backups(maint: Callable, dbname: str) -> list[dict]:
    """The sessions that hold the backup lock of ``dbname`` now (application name, since)."""
    with maint() as conn:
        return dicts(conn, "SELECT a.application_name, a.backend_start FROM pg_locks l"
                           " JOIN pg_stat_activity a ON a.pid = l.pid"
                           " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(c)s AND l.objid = %(o)s"
                           " AND l.objsubid = 2 ORDER BY a.backend_start",
                     {"c": BACKUP_CLASS, "o": _key(dbname) & 0xFFFFFFFF})
