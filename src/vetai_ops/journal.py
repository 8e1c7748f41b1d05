"""The deploy journal: JSON lines in logs/migration.log and a deploy_history table in the target DB."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from .events import Event
from .paths import logs_dir
from .secrets import redact, redact_data

HISTORY_DDL = """
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


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class FileJournal:
    """Appends every event of a run to logs/migration.log (one JSON object a line)."""

    def __init__(self, run_id: str, action: str, env: str, path: Path | None = None, enabled: bool = True):
        self.run_id = run_id
        self.action = action
        self.env = env
        self.path = path or logs_dir() / "migration.log"
        self.lines: list[str] = []
        self._f = None
        if not enabled:  # read-only views: nothing is written
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", buffering=1)
        except OSError:
            self._f = None  # journaling must never break a deploy; the DB row still records it

    def emit(self, event: Event) -> None:
        if event.kind == "progress":
            return
        rec = {
            "ts": _iso(event.ts),
            "run": self.run_id,
            "action": self.action,
            "env": self.env,
            "event": event.kind,
            "step": event.step,
            "message": redact(event.message),
        }
        if event.data:
            rec["data"] = redact_data(json.loads(json.dumps(event.data, default=str)))
        line = json.dumps(rec, default=str)
        self.lines.append(line)
        if self._f:
            try:
                self._f.write(line + "\n")
            except OSError:
                pass

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None


_COLUMNS = ("run_id, action, env, operator, started_at, finished_at, from_revision, to_revision, backup_id,"
            " outcome, error, steps, revisions, tool_version")
_INSERT = text(
    f"INSERT INTO deploy_history ({_COLUMNS}) VALUES (:run_id, :action, :env, :operator, :started_at, :finished_at,"
    " :from_revision, :to_revision, :backup_id, :outcome, :error, CAST(:steps AS jsonb), CAST(:revisions AS jsonb),"
    " :tool_version)")


def record_history(engine: Engine, row: dict[str, Any]) -> None:
    """Insert one deploy_history row in the target DB (created on first use)."""
    with engine.begin() as c:
        c.execute(text(HISTORY_DDL))
        c.execute(_INSERT, _params({**row, "started_at": _utc(row["started"]), "finished_at": _utc(row["finished"])}))


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "steps": json.dumps(row.get("steps") or []), "revisions": json.dumps(row.get("revisions") or [])}


def carry_history(src: Engine, dst: Engine) -> int:
    """Copy the deploy_history rows of ``src`` that ``dst`` lacks (by run_id). After a restore
    the live database is the backup's copy; the runs made since that backup live on in the
    retired database and must stay in the journal. Returns how many rows were copied."""
    with src.connect() as c:
        if not c.execute(text("select to_regclass('public.deploy_history')")).scalar():
            return 0
        rows = c.execute(text(f"SELECT {_COLUMNS} FROM deploy_history ORDER BY id")).mappings().all()
    if not rows:
        return 0
    with dst.begin() as c:
        c.execute(text(HISTORY_DDL))
        have = set(c.execute(text("SELECT run_id FROM deploy_history")).scalars())
        new = [_params(dict(r)) for r in rows if r["run_id"] not in have]
        if new:
            c.execute(_INSERT, new)
    return len(new)


def read_history(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as c:
        exists = c.execute(text("select to_regclass('public.deploy_history')")).scalar()
        if not exists:
            return []
        rows = c.execute(
            text(
                f"SELECT {_COLUMNS} FROM deploy_history ORDER BY finished_at DESC, id DESC LIMIT :n"
            ),
            {"n": limit},
        ).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        for k in ("started_at", "finished_at"):
            d[k] = d[k].isoformat(timespec="seconds") if d[k] else None
        out.append(d)
    return out


def operator_id() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"

