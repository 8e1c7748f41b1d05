"""The ``read_only`` write fence at the database level.

Raised: ``ALTER DATABASE <db> SET default_transaction_read_only = on``, then the database's
other sessions are ended, so the app reconnects and every transaction it opens is read-only
("cannot execute INSERT in a read-only transaction"). The tool's own sessions are excepted:
they connect with ``-c default_transaction_read_only=off`` (:mod:`.access`), which a
connection's options override a database setting with.

Lifted: the database's previous value is put back (RESET when it had none) and the sessions
are ended again, so the app reconnects writable (a session keeps the default it started with).

Limits (README): an app that runs ``SET default_transaction_read_only = off`` or ``BEGIN READ
WRITE`` itself is not stopped; sessions must be ended to take the fence, which needs the
deploy role's ``pg_signal_backend`` (or membership of the app role), as a restore's swap does.
"""

from __future__ import annotations

from psycopg import sql

from .swap import terminate_sessions

SETTING = "default_transaction_read_only"


def _x(c, stmt: sql.Composable) -> None:
    c.execute(stmt)


def current_setting(c, db: str) -> str | None:
    """The database's own value of default_transaction_read_only (all roles), or None."""
    row = c.execute(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
        " WHERE d.datname = %(d)s AND s.setrole = 0", {"d": db}).fetchone()
    for item in (row[0] if row and row[0] else []):
        k, _, v = item.partition("=")
        if k == SETTING:
            return v
    return None


def exists(c, db: str) -> bool:
    return c.execute("SELECT 1 FROM pg_database WHERE datname = %(d)s", {"d": db}).fetchone() is not None


def raise_read_only(maint, db: str) -> tuple[str | None, int]:
    """Fence ``db``; returns (its previous own value, sessions ended). ``maint`` opens an
    autocommit maintenance connection (``access.admin``)."""
    with maint() as c:
        previous = current_setting(c, db)
        _x(c, sql.SQL("ALTER DATABASE {} SET {} = on").format(sql.Identifier(db), sql.Identifier(SETTING)))
        return previous, terminate_sessions(c, db)  # they reconnect with the new default


def set_read_only(maint, db: str) -> None:
    """The setting alone, no session ended (a restore copy about to become live, before its swap)."""
    with maint() as c:
        _x(c, sql.SQL("ALTER DATABASE {} SET {} = on").format(sql.Identifier(db), sql.Identifier(SETTING)))


def lift_read_only(maint, db: str, previous: str | None) -> int:
    """Put ``db``'s previous value back and end its sessions; 0 when ``db`` no longer exists."""
    with maint() as c:
        if not exists(c, db):
            return 0
        if previous is None:
            _x(c, sql.SQL("ALTER DATABASE {} RESET {}").format(sql.Identifier(db), sql.Identifier(SETTING)))
        else:
            _x(c, sql.SQL("ALTER DATABASE {} SET {} = {}").format(sql.Identifier(db), sql.Identifier(SETTING),
                                                                  sql.Literal(previous)))
        return terminate_sessions(c, db)  # they reconnect with the new default
