"""``deploy_history``: the journal's table in the target database (one row per run), and its
carry-over when a restore replaces the database (the runs since the backup live on only in
the retired one). SQL composed with ``psycopg.sql``; values are bound parameters."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from psycopg import sql

from .pg import column, dicts, scalar

if TYPE_CHECKING:
    from psycopg import Connection

TABLE = sql.Identifier("deploy_history")
DDL = """
CREATE TABLE IF NOT EXISTS deploy_history (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    action text NOT NULL,
    env text NOT NULL,
    operator text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    from_revision text,
    to_revision text,
    backup_id text,
    outcome text NOT NULL,
    error text,
    steps jsonb NOT NULL DEFAULT '[]'::jsonb,
    revisions jsonb NOT NULL DEFAULT '[]'::jsonb,
    tool_version text
)
"""
COLUMNS = ("run_id", "action", "env", "operator", "started_at", "finished_at", "from_revision", "to_revision",
           "backup_id", "outcome", "error", "steps", "revisions", "tool_version")
_JSON = ("steps", "revisions")


_COLS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_INSERT = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(TABLE, _COLS, sql.SQL(", ").join(
    sql.SQL("CAST({} AS jsonb)").format(sql.Placeholder(c)) if c in _JSON else sql.Placeholder(c) for c in COLUMNS))
_SELECT_ALL = sql.SQL("SELECT {} FROM {} ORDER BY id").format(_COLS, TABLE)
_SELECT_NEWEST = sql.SQL("SELECT {} FROM {} ORDER BY finished_at DESC, id DESC LIMIT %(n)s").format(_COLS, TABLE)
_RUN_IDS = sql.SQL("SELECT run_id FROM {}").format(TABLE)


def _exists(c) -> bool:
    return bool(scalar(c, "SELECT to_regclass('public.deploy_history')"))


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **{k: json.dumps(row.get(k) or []) for k in _JSON}}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def record(connect: Callable[[], Connection], row: dict[str, Any]) -> None:
    """Insert one run's row (``started`` / ``finished``: epoch seconds) in the target DB
    (``connect``: e.g. ``access.connect``), creating the table on first use."""
    with connect() as c:  # commits on a clean exit
        c.execute(DDL)
        c.execute(_INSERT, _params({**row, "started_at": _utc(row["started"]), "finished_at": _utc(row["finished"])}))


def read(connect: Callable[[], Connection], limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` rows, newest first (times as ISO strings); none without the table."""
    with connect() as c:
        if not _exists(c):
            return []
        rows = dicts(c, _SELECT_NEWEST, {"n": limit})
    out = []
    for d in rows:
        for k in ("started_at", "finished_at"):
            d[k] = d[k].isoformat(timespec="seconds") if d[k] else None
        out.append(d)
    return out


def carry_over(src: Callable[[], Connection], dst: Callable[[], Connection]) -> int:
    """Copy the rows of ``src``'s database that ``dst``'s lacks (by run_id). After a restore
    the live database is the backup's copy; the runs made since that backup live on in the
    retired database and must stay in the journal. Returns how many rows were copied."""
    with src() as c:
        if not _exists(c):
            return 0
        rows = dicts(c, _SELECT_ALL)
    if not rows:
        return 0
    with dst() as c:  # one transaction, committed on a clean exit
        c.execute(DDL)
        have = set(column(c, _RUN_IDS))
        new = [_params(r) for r in rows if r["run_id"] not in have]
        if new:
            with c.cursor() as cur:
                cur.executemany(_INSERT, new)
    return len(new)
