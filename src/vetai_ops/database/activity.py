"""Is a pg_restore still getting somewhere? Asked of the server, not of a byte stream.

A restore reads a verified archive on the DB host, so no byte passes the operator that a
:class:`~vetai_ops.targets.stall.StallWatch` could count. What the server shows instead:
a session on the new database running a statement that waits neither for a lock nor for
its client (a stopped or hung pg_restore leaves its sessions idle, or in ``ClientRead``
mid-COPY), or COPY having taken more bytes since the last look. Neither for
``backup.stall_timeout`` seconds: the restore is stalled.
"""

from __future__ import annotations

_PROGRESS = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = %(db)s AND state = 'active'"
    "               AND wait_event_type IS DISTINCT FROM 'Lock' AND wait_event_type IS DISTINCT FROM 'Client'),"
    " (SELECT coalesce(sum(bytes_processed), 0) FROM pg_stat_progress_copy WHERE datname = %(db)s)"
)


class RestoreProgress:
    """``moved()``: did the restore into ``dbname`` work since the last call? ``maint`` opens a
    maintenance connection (``access.admin``: the deploy role, the role pg_restore runs as, so
    its sessions' states are visible without pg_read_all_stats)."""

    def __init__(self, maint, dbname: str):
        self.maint, self.dbname = maint, dbname
        self._copied = 0

    def moved(self) -> bool:
        with self.maint() as c:
            working, copied = c.execute(_PROGRESS, {"db": self.dbname}).fetchone()
        grew, self._copied = int(copied) > self._copied, int(copied)
        return bool(working) or grew
