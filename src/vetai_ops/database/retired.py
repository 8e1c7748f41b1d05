"""Databases a restore retired: ``<db>_before_<id>[_<n>]``, stamped with the time they were
retired. Restore names and stamps them, prune lists and ages them: one place for the naming
and the stamp, so the writer and the reader cannot drift apart."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from typing import Callable

from psycopg import sql

from ..errors import OpsError

MARK = "vetai-ops retired "  # + UTC time: the comment on a database a restore replaced
_SUFFIX = re.compile(r"^([0-9]{8}t[0-9]{6}z)(?:_[0-9]+)?\Z")  # <backup id> or <swap time>[_<n>]
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def prefix(live: str) -> str:
    return f"{live}_before_".lower()


def retired_databases(maint: Callable, live: str) -> list[tuple[str, str, datetime | None]]:
    """(database, id in its name, retired at if stamped) of ``live``'s retired databases;
    names a restore would not give are left out (never touched). ``maint`` opens a
    maintenance connection (``access.admin``)."""
    p = prefix(live)
    with maint() as c:
        rows = c.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                         " WHERE starts_with(datname, %(p)s)", {"p": p}).fetchall()
    out = []
    for name, comment in rows:
        m = _SUFFIX.match(name[len(p):])
        if m:
            out.append((name, m.group(1).upper(), _retired_at(comment)))
    return out


def unused_name(maint: Callable, live: str, backup_id: str, swap_id: str, planned: str | None = None) -> str:
    """A name for the database a restore of ``backup_id`` retires: the backup's id, else the
    swap time, then ``_2``, ``_3``...; never one an earlier restore kept (two restores of one
    backup can fall within the second that backup was taken). ``planned``: the name the
    operator was shown (the run's plan), kept when it is still free."""
    first, stamp = f"{prefix(live)}{backup_id.lower()}", f"{prefix(live)}{swap_id.lower()}"
    taken = {name for name, _, _ in retired_databases(maint, live)}
    own = [planned] if planned and planned.startswith(prefix(live)) and _SUFFIX.match(planned[len(prefix(live)):]) else []
    for name in own + [first, stamp] + [f"{stamp}_{n}" for n in range(2, 100)]:
        if name not in taken:
            return name
    raise OpsError(f"more than 100 databases named {prefix(live)}* exist; drop old ones "
                   "(they are the databases retired by earlier restores; `invoke backups.prune` does it)")


def mark_retired(maint: Callable, name: str, backup_id: str) -> None:
    """Stamp ``name`` with now (prune ages retired databases by it)."""
    comment = f"{MARK}{datetime.now(timezone.utc).strftime(_STAMP)} (replaced by backup {backup_id})"
    stmt = sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment))
    with maint() as c:
        c.execute(stmt)


def _retired_at(comment: str | None) -> datetime | None:
    if not comment or not comment.startswith(MARK):
        return None
    try:
        return datetime.strptime(comment[len(MARK):].split()[0], _STAMP).replace(tzinfo=timezone.utc)
    except (ValueError, IndexError):
        return None
