"""The swap of a restore, and the repair of one that was interrupted.

The swap is ONE transaction on the maintenance database (PostgreSQL allows ``ALTER DATABASE
... RENAME`` in a transaction block; checked on 15)::

    SELECT pg_terminate_backend(pid) ...       -- the live database's sessions (the app's too)
    BEGIN
    ALTER DATABASE live RENAME TO before       -- takes the database's lock: new sessions wait
    ALTER DATABASE scratch RENAME TO live
    COMMIT                                     -- both names change together, or neither

While the transaction is open, a new connection to the live name waits on the database's
lock, then either finds the old database (the transaction aborted) or is told the name "was
just renamed" and reconnects to the restored one. Whatever moment the operator dies, the
server aborts the open transaction: the live name never goes missing and no database is
left refusing connections. A dead operator is noticed even while its statement waits on a
lock (``client_connection_check_interval``) or when the link just goes silent
(``idle_in_transaction_session_timeout``, ``lock_timeout``), so its transaction cannot hold
the database's lock for long.

:func:`repair` puts right what an interrupted swap (this one or the older two-step one) can
leave: a live database refusing connections, a live name missing while the database it
named is kept under ``<db>_before_<id>`` (not yet stamped as retired), and restore copies
``<db>_restore_<id>`` of runs that died. It runs under the env's lock, before anything else.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from ..errors import short_error
from . import retired

APPLICATION = "vetai-ops swap"  # the swap session's application_name (tests find it by this)
# the swap session's own limits: a dead or silent operator cannot keep the lock on the live DB
SESSION = {
    "lock_timeout": "30s",
    "idle_in_transaction_session_timeout": "30s",
    "client_connection_check_interval": "1s",  # PostgreSQL 14+: notice a closed client while waiting
}
OBJECT_IN_USE = "55006"  # "database ... is being accessed by other users"
ATTEMPTS = 5


def restore_prefix(live: str) -> str:
    return f"{live}_restore_".lower()


def restore_name(live: str, backup_id: str) -> str:
    return f"{restore_prefix(live)}{backup_id.lower()}"


def rehearsal_prefix(live: str) -> str:
    return f"{live}_rehearse_".lower()


def rehearsal_name(live: str, backup_id: str) -> str:
    """The scratch copy a deploy rehearses its revisions on (steps/rehearse.py)."""
    return f"{rehearsal_prefix(live)}{backup_id.lower()}"


_RESTORE_SUFFIX = re.compile(r"^\d{8}t\d{6}z$")


def _x(c, stmt) -> None:
    c.execute(stmt)


def terminate_sessions(c, db: str) -> int:
    """End every other client session on ``db`` (pg_signal_backend, or membership of their roles).

    Only client backends: an autovacuum worker has no role, so ending it takes a superuser
    ("must be a superuser to terminate superuser process"), and PostgreSQL itself stops the
    autovacuum workers of a database that is renamed, dropped or altered."""
    return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %(d)s AND pid <> pg_backend_pid()"
                         " AND backend_type = 'client backend'", {"d": db}).fetchall())


def _exists(maint: Callable, name: str) -> bool:
    with maint() as c:
        return c.execute("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name}).fetchone() is not None


def swap_in(maint: Callable, live: str, scratch: str, before: str,
            emit: Callable[[str, str], None] | None = None) -> None:
    """Rename ``live`` -> ``before`` and ``scratch`` -> ``live`` in one transaction (on an
    autocommit maintenance connection ``maint()`` opens, with an explicit BEGIN / COMMIT).
    Raises on failure with nothing renamed. A session
    that reconnects between the termination and the rename makes the rename fail with
    "being accessed by other users": then the sessions are ended again and the swap retried."""
    emit = emit or (lambda kind, msg: None)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with maint() as c:
                _x(c, sql.SQL("SET application_name = {}").format(sql.Literal(APPLICATION)))
                for k, v in SESSION.items():
                    try:
                        _x(c, sql.SQL("SET {} = {}").format(sql.Identifier(k), sql.Literal(v)))
                    except psycopg.Error:  # a server older than the setting (autocommit: no harm done)
                        pass
                n = terminate_sessions(c, live)
                if n:
                    emit("info", f"ended {n} session(s) on {live}")
                _x(c, "BEGIN")
                try:
                    _x(c, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(before)))
                    _x(c, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(scratch), sql.Identifier(live)))
                except BaseException:
                    try:
                        _x(c, "ROLLBACK")
                    except Exception:  # noqa: BLE001 - the session is gone: the server aborted it
                        pass
                    raise
                try:
                    _x(c, "COMMIT")
                except Exception:
                    # the answer to COMMIT was lost: the catalog says whether it happened
                    if _exists(maint, before) and _exists(maint, live) and not _exists(maint, scratch):
                        return
                    raise
                return
        except psycopg.Error as e:
            if e.sqlstate == OBJECT_IN_USE and attempt < ATTEMPTS:
                emit("warning", f"sessions reconnected to {live} during the swap; ending them again "
                                f"(attempt {attempt + 1} of {ATTEMPTS})")
                time.sleep(0.2 * attempt)
                continue
            raise


def swap_restored(maint: Callable, live: str, scratch: str, backup_id: str, *, planned: str | None = None,
                  before_swap: Callable[[], None] | None = None,
                  emit: Callable[[str, str], None] | None = None) -> str:
    """A restore's swap: the name ``live`` is kept under (:func:`retired.unused_name`, the
    ``planned`` one when still free), ``before_swap()`` (a fence on the copy, the lock asked
    again), then both renames in one transaction (:func:`swap_in`). Returns the retired name."""
    swap_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    before = retired.unused_name(maint, live, backup_id, swap_id, planned)
    if before_swap is not None:
        before_swap()
    swap_in(maint, live, scratch, before, emit)
    return before


def settle(maint: Callable, access, before: str, backup_id: str, emit: Callable[[str, str], None]) -> None:
    """After a swap, best effort (the swap is done): stamp ``before`` with the time it was
    retired (prune ages it by that), and carry the journal of the runs since the backup into
    the restored database (they live on only in the retired one: database/history.py)."""
    from . import history

    try:
        retired.mark_retired(maint, before, backup_id)
    except Exception as e:  # noqa: BLE001
        emit("warning", f"could not mark {before} with its retirement time: {short_error(e)}")
    try:
        n = history.carry_over(lambda: access.connect(before), access.connect)
        if n:
            emit("info", f"{n} deploy_history row(s) of runs since backup {backup_id} carried over from {before}")
    except Exception as e:  # noqa: BLE001
        emit("warning", f"could not carry deploy_history over from {before}: {short_error(e)}")


def verify_name(live: str, backup_id: str) -> str:
    """The scratch database a restore drill of ``backup_id`` uses (steps/verify.py)."""
    return f"{live}_verify_{backup_id}".lower()


def restore_copies(maint: Callable, live: str) -> list[str]:
    """Databases named like this env's restore copies (``<db>_restore_<backup id>``) and
    rehearsal copies (``<db>_rehearse_<backup id>``)."""
    out = []
    with maint() as c:
        for p in (restore_prefix(live), rehearsal_prefix(live)):
            names = [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %(p)s)", {"p": p})]
            out += [n for n in names if _RESTORE_SUFFIX.match(n[len(p):])]
    return sorted(out)


def repair(maint: Callable, live: str) -> list[str]:
    """Put right what an interrupted swap left; returns what was done (empty: nothing to do).
    Call it only under the env's lock: then no other run's restore copy can be in use."""
    done: list[str] = []
    with maint() as c:
        row = c.execute("SELECT datallowconn FROM pg_database WHERE datname = %(n)s", {"n": live}).fetchone()
    if row is None:
        # the older two-step swap died between its renames: the live database is the newest
        # retired one not yet stamped (a finished swap stamps it)
        orphans = sorted((name for name, _, at in retired.retired_databases(maint, live) if at is None), reverse=True)
        if not orphans:
            return done  # no swap's doing: the steps that need the database say it is missing
        with maint() as c:
            _x(c, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(orphans[0]), sql.Identifier(live)))
        done.append(f"renamed {orphans[0]} back to {live} (a swap had died between its renames)")
        with maint() as c:
            row = c.execute("SELECT datallowconn FROM pg_database WHERE datname = %(n)s", {"n": live}).fetchone()
    if row is not None and not row[0]:
        with maint() as c:
            _x(c, sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(live)))
        done.append(f"{live} accepts connections again (a swap had died after blocking them)")
    for name in restore_copies(maint, live):
        try:
            with maint() as c:
                _x(c, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            done.append(f"dropped {name}, the restore copy of a run that died")
        except Exception as e:  # noqa: BLE001 - named, not fatal: the run goes on
            done.append(f"could not drop {name}, the restore copy of a run that died: {short_error(e)}")
    return done
