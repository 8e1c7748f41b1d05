"""The env's deploy lock: a session-level PostgreSQL advisory lock, and proof it is still held.

The lock lives on one connection to the server's maintenance database (so the live
database can be renamed during a restore swap), keyed by the target database name. It
dies with its session: a crashed or killed operator cannot leave it behind, but neither
can a network drop, an SSH reconnect or a ``pg_terminate_backend`` keep it. So a run asks
again (:meth:`DeployLock.ensure`) before each change it cannot take back (migrate, the
restore swap): a lost lock stops the run there, or, in a recovery that must finish, is
taken again when nobody else holds it.
"""

from __future__ import annotations

import zlib

from ..errors import LockHeld, LockLost, short_error

LOCK_CLASS = 0x7E7A  # first int4 key: "vetai-ops"


def lock_key(dbname: str) -> int:
    return zlib.crc32(dbname.encode()) - (1 << 31)


def holder(conn, dbname: str) -> dict | None:
    from .pg import dicts

    rows = dicts(conn, "SELECT a.application_name, a.backend_start, a.client_addr::text AS addr, a.pid"
                       " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                       " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(c)s AND l.objid = %(o)s"
                       " AND l.objsubid = 2",
                 {"c": LOCK_CLASS, "o": lock_key(dbname) & 0xFFFFFFFF})
    return rows[0] if rows else None


def _who(h: dict | None) -> str:
    h = h or {}
    who = (h.get("application_name") or "another vetai-ops run").removeprefix("vetai-ops ")
    since = h.get("backend_start")
    return f"{who}, since {since.isoformat(timespec='seconds') if since else 'an unknown time'}"


class DeployLock:
    """``maint``: opens an autocommit connection to the maintenance DB (``access.admin``); the
    lock's session is one of those, kept open. ``env``/``dbname`` name what is locked."""

    def __init__(self, maint, env: str, dbname: str, app: str):
        self.maint = maint
        self.env = env
        self.dbname = dbname
        self.app = app[:63]
        self.conn = None
        self.pid: int | None = None
        self.retaken = 0

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeld` naming the holder and since when."""
        conn = self.maint()
        try:
            conn.execute("select set_config('application_name', %(a)s, false)", {"a": self.app})
            got = conn.execute("select pg_try_advisory_lock(%(c)s, %(o)s)",
                               {"c": LOCK_CLASS, "o": lock_key(self.dbname)}).fetchone()[0]
            if not got:
                h = holder(conn, self.dbname)
                raise LockHeld(
                    f"a deploy is in progress on env {self.env!r} (database {self.dbname}): {_who(h)}",
                    "wait for it to finish; the lock is released automatically when that run ends",
                )
            self.pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def held(self) -> bool:
        """Is the lock still held by our session? (False when the session is gone.)"""
        if self.conn is None:
            return False
        try:
            n = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
                " AND classid = %(c)s AND objid = %(o)s AND objsubid = 2",
                {"c": LOCK_CLASS, "o": lock_key(self.dbname) & 0xFFFFFFFF},
            ).fetchone()[0]
            return bool(n)
        except Exception:  # noqa: BLE001 - terminated session, dropped tunnel: not held
            return False

    def ensure(self, before: str, *, retake: bool = False) -> str | None:
        """Raise :class:`LockLost` when the lock is gone, unless ``retake`` and nobody else holds
        it now (then it is ours again and a warning text is returned)."""
        if self.held():
            return None
        self.close()
        lost = (f"the deploy lock on env {self.env!r} (database {self.dbname}) was lost: its database session "
                "ended (a network drop, an SSH reconnect, or a terminated backend)")
        if not retake:
            raise LockLost(f"{lost}; stopped before {before} so no second deployer can run unseen",
                           "check that no other deploy is running (`invoke history`), then re-run")
        try:
            self.acquire()
        except LockHeld as e:
            raise LockLost(f"{lost}, and another run holds it now ({e.message.split(': ', 1)[-1]}); "
                           f"stopped before {before}", "let that run finish, then check `invoke status`") from None
        except Exception as e:  # noqa: BLE001 - the server is unreachable
            raise LockLost(f"{lost}, and it could not be taken again ({short_error(e)}); stopped before {before}",
                           "check the DB host and the network") from None
        self.retaken += 1
        return f"{lost}; nobody else held it, so it was taken again before {before}"

    def close(self) -> None:
        """Release by ending the session."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already gone
                pass
