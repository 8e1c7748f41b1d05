"""``deploy_history``: the journal's table in the target database (one row per run), and its
carry-over when a restore replaces the database (the runs since the backup live on only in
the retired one). SQL composed with ``psycopg.sql``; values are bound parameters."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import Engine

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


def _q(stmt: sql.Composable):
    """A composed statement as SQLAlchemy text (``:name`` binds stay bound parameters)."""
    return text(stmt.as_string())


_COLS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_INSERT = _q(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(TABLE, _COLS, sql.SQL(", ").join(
    sql.SQL(f"CAST(:{c} AS jsonb)" if c in _JSON else f":{c}") for c in COLUMNS)))
_SELECT_ALL = _q(sql.SQL("SELECT {} FROM {} ORDER BY id").format(_COLS, TABLE))
_SELECT_NEWEST = _q(sql.SQL("SELECT {} FROM {} ORDER BY finished_at DESC, id DESC LIMIT :n").format(_COLS, TABLE))
_RUN_IDS = _q(sql.SQL("SELECT run_id FROM {}").format(TABLE))


def _exists(c) -> bool:
    return bool(c.execute(text("SELECT to_regclass('public.deploy_history')")).scalar())


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **{k: json.dumps(row.get(k) or []) for k in _JSON}}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def record(engine: Engine, row: dict[str, Any]) -> None:
    """Insert one run's row (``started`` / ``finished``: epoch seconds) in the target DB,
    creating the table on first use."""
    with engine.begin() as c:
        c.execute(text(DDL))
        c.execute(_INSERT, _params({**row, "started_at": _utc(row["started"]), "finished_at": _utc(row["finished"])}))


def read(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` rows, newest first (times as ISO strings); none without the table."""
    with engine.connect() as c:
        if not _exists(c):
            return []
        rows = c.execute(_SELECT_NEWEST, {"n": limit}).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        for k in ("started_at", "finished_at"):
            d[k] = d[k].isoformat(timespec="seconds") if d[k] else None
        out.append(d)
    return out


def carry_over(src: Engine, dst: Engine) -> int:
    """Copy the rows of ``src`` that ``dst`` lacks (by run_id). After a restore the live
    database is the backup's copy; the runs made since that backup live on in the retired
    database and must stay in the journal. Returns how many rows were copied."""
    with src.connect() as c:
        if not _exists(c):
            return 0
        rows = c.execute(_SELECT_ALL).mappings().all()
    if not rows:
        return 0
    with dst.begin() as c:
        c.execute(text(DDL))
        have = set(c.execute(_RUN_IDS).scalars())
        new = [_params(dict(r)) for r in rows if r["run_id"] not in have]
        if new:
            c.execute(_INSERT, new)
    return len(new)
